"""kill -9 of the only broker while jobs stream, then a restart on the same storage.

What an operator checks after a broker restart: every job accepted before it
ended exactly once (read_committed), every SSE watcher got its job whole
(resuming with Last-Event-ID when its stream broke), each part's ``/readyz``
said 503 while Kafka was gone and 200 soon after it came back, a submission
during the outage was refused quickly with ``Retry-After``, and no service
process had to be restarted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import LocalBroker, throwaway_broker
from tests.conftest import ALICE
from tests.support.aggregators import with_aggregator_port
from tests.support.faults import (
    WatchedJobs,
    every_job_ended,
    seconds_until,
    still_running,
    three_parts,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

JOBS = 6
TOKENS = 120
"""Ten seconds of tokens per job at 12/s: the broker dies while every job streams."""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A single-node broker of this test's own, to kill and start again."""
    broker = throwaway_broker(tmp_path / "kafka", Settings())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.timeout(300)
async def test_broker_kill_9_and_restart_loses_nothing(
    make_settings: Callable[..., Settings], own_broker: LocalBroker, tmp_path: Path
) -> None:
    broker = own_broker
    settings = with_aggregator_port(
        make_settings(kafka_bootstrap=broker.bootstrap, worker_session_timeout_ms=6000)
    )
    with three_parts(settings, tmp_path) as parts:
        pids = {name: child.proc.pid for name, child in parts.items()}
        async with httpx.AsyncClient(base_url=parts["public"].url, timeout=30) as client:
            jobs = WatchedJobs(client, TOKENS)
            await jobs.submit(JOBS, tokens_per_s=12)
            await jobs.streaming()

            os.kill(broker.running_pid() or 0, signal.SIGKILL)
            down = await seconds_until(client, parts, 503, timeout=30)

            t0 = time.monotonic()
            r = await client.post("/v1/jobs", json={"prompt": "in the outage"}, headers=ALICE)
            outage_submit_s = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "kafka_unavailable"
            assert int(r.headers["Retry-After"]) >= 1
            assert outage_submit_s <= settings.submit_timeout_s + 1.0

            t0 = time.monotonic()
            await asyncio.to_thread(broker.start)
            broker_start_s = time.monotonic() - t0
            back = await seconds_until(client, parts, 200, timeout=90)

            watched = await jobs.watched()
            after = await client.post("/v1/jobs", json={"prompt": "after"}, headers=ALICE)
            assert after.status_code == 202, after.text

        events = await every_job_ended(broker.bootstrap, settings, jobs.ids)
        still_running(parts, pids)

    attempts = jobs.check(events, watched)
    print(
        f"\n{JOBS} jobs: lost 0, twice 0, ended at attempts {dict(attempts)}; "
        f"readyz 503 after the kill {down}; outage submit 503 in {outage_submit_s:.2f}s; "
        f"broker restart {broker_start_s:.1f}s; readyz 200 after it answered {back}; "
        f"watchers resumed {len(jobs.reconnects)} times"
    )
