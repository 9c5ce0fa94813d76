"""Percentiles, the one way every part computes them (the worker's inter-token latency,
the benchmarks' figures): linear interpolation between closest ranks, as numpy's default."""

from __future__ import annotations

import math


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolated between neighbours."""
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
