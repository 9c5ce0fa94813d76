"""The whole stack as ``make up`` runs it, with the public face in a child process of its own.

An aggregator process, a worker in this process, and ``tokenrelay serve ingest
gateway analytics`` in a child (on a chDB directory of its own), so that what
a client's requests cost that process can be read from ``/proc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.analytics import analytics_process
from tests.support.stack import running
from tests.support.workers import ChildProcess

PUBLIC_FACE = tuple(os.environ.get("TR_FACE", "ingest gateway analytics").split())


@contextmanager
def public_stack(settings: Settings, log_dir: Path) -> Iterator[ChildProcess]:
    """Yields the public face's child process (its ``url`` is the API's base URL)."""
    settings = with_aggregator_port(settings)
    with (
        aggregator_process(settings, log_dir),
        running(settings, ["worker"]),  # the public face is ready once a worker is in the group
        analytics_process(
            settings, log_dir, free_port(), log_dir / "chdb-public", "public", PUBLIC_FACE
        ) as public,
    ):
        yield public


def peak_rss_mb(pid: int) -> float:
    """The most resident memory the process has had (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
