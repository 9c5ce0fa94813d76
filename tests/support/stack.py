"""Run composed services in a background thread of the test process, on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread


@contextmanager
def running(settings: Settings, names: list[str], ready_path: str = "/readyz") -> Iterator[str]:
    """Serve ``names`` until the block ends; yields the base URL once ``ready_path`` is 200."""
    with serving_in_thread(settings, names, free_port(), ready_path) as base:
        yield base
