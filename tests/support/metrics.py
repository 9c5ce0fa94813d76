"""Reading a part's ``/metrics`` the way Prometheus does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_total(text: str, name: str) -> float:
    """The sum of ``name``'s samples, every label together, in a ``/metrics`` answer (0 when
    absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )
