"""Priority across the four job topics, under saturation, through the real broker."""

from __future__ import annotations

import httpx
import pytest

from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import events_reader, of_type

pytestmark = pytest.mark.kafka

SLOW = {"max_tokens": 10, "provider_options": {"tokens_per_s": 20}}
"""Half a second per job."""


async def test_urgent_job_overtakes_queued_lows(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(worker_concurrency=4)
    t = settings.topics
    with running(settings, ["ingest", "worker"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, settings.topic_partitions) as log,
        ):
            lows = [await submit(client, priority="low", **SLOW) for _ in range(16)]
            await log.until(lambda ev: len(of_type(ev, "started")) >= 4, what="lows running")
            urgent = await submit(client, priority="urgent", **SLOW)
            events = await log.until(
                lambda ev: len(of_type(ev, "completed")) == 17, what="all jobs completed"
            )

    started = {e.job_id: e.ts for e in of_type(events, "started")}
    assert set(started) == {*lows, urgent}
    lows_before = sum(started[j] < started[urgent] for j in lows)
    assert lows_before <= 8, f"{lows_before} low jobs started before the urgent one"
    waits = {e.job_id: e.queue_wait_ms for e in of_type(events, "started")}
    print(f"\nurgent waited {waits[urgent]:.0f} ms; lows started before it: {lows_before}")
