"""Aggregator processes (the Faust app) for tests: start, kill -9, start again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.support.stack import running
from tests.support.workers import ChildProcess, child_process, settings_env


def with_aggregator_port(settings: Settings) -> Settings:
    """The settings with a free port for the aggregator, and the public face pointing at it."""
    port = free_port()
    return settings.model_copy(
        update={"aggregator_port": port, "aggregator_url": f"http://127.0.0.1:{port}"}
    )


@contextmanager
def aggregator_process(
    settings: Settings, log_dir: Path, name: str = "aggregator"
) -> Iterator[ChildProcess]:
    """``tokenrelay aggregator`` on ``settings.aggregator_port``, ready (recovered) when yielded."""
    port = settings.aggregator_port
    env = {
        **settings_env(settings),
        "TOKENRELAY_DATA_DIR": str(log_dir / name),
        "TOKENRELAY_AGGREGATOR_PORT": str(port),
    }
    with child_process(name, ["aggregator"], env, log_dir, port) as child:
        yield child


@contextmanager
def stack_with_aggregator(settings: Settings, log_dir: Path) -> Iterator[str]:
    """An aggregator process and, in this process, ingest + gateway + a worker reading
    from it; yields the public face's base URL. ``settings`` need an aggregator port."""
    with (
        aggregator_process(settings, log_dir),
        running(settings, ["ingest", "gateway", "worker"]) as base,
    ):
        yield base


def get_state(url: str, job_id: str, http: httpx.Client | None = None) -> dict[str, object] | None:
    """The aggregator's state of the job, None if it has none; ``http`` reuses a client
    (a poll of many jobs would otherwise open a connection per read)."""
    r = (http or httpx).get(f"{url}/jobs/{job_id}", timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body: dict[str, object] = r.json()
    return body
