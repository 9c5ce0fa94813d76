"""Two worker processes share 200 jobs: each ends once, offsets committed to the end."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.kafka import Consumer
from tests.support.jobs import submit
from tests.support.topic_reader import events_reader, of_type
from tests.support.workers import two_workers_and_ingest

pytestmark = pytest.mark.kafka

JOBS = 200


async def test_two_hundred_jobs_across_two_workers_end_once(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(worker_concurrency=8, topic_partitions=3)
    t = settings.topics
    with two_workers_and_ingest(settings, tmp_path) as (wa, wb, base):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
        ):
            gate = asyncio.Semaphore(16)

            async def one(i: int) -> str:
                async with gate:
                    return await submit(client, prompt=f"job {i}", max_tokens=5)

            ids = await asyncio.gather(*(one(i) for i in range(JOBS)))
            events = await log.until(
                lambda ev: len(of_type(ev, *TERMINAL_EVENT_TYPES)) >= JOBS,
                timeout=120,
                what="200 ended",
            )
        committed, ends = await committed_and_ends(
            settings.kafka_bootstrap, settings.worker_group, t.jobs["normal"]
        )
        workers_seen = {e.worker_id for e in of_type(events, "started")}
        assert workers_seen == {wa.worker_id, wb.worker_id}, "both processes ran jobs"

    ended = Counter(e.job_id for e in of_type(events, *TERMINAL_EVENT_TYPES))
    assert set(ended) == set(ids)
    assert max(ended.values()) == 1, "a job ended twice"
    assert {e.type for e in of_type(events, *TERMINAL_EVENT_TYPES)} == {"completed"}
    for p in range(3):
        assert committed[p].offset == ends[p], (
            f"partition {p}: committed {committed[p]} of {ends[p]}"
        )
        assert committed[p].metadata == "", "nothing left open above the committed offset"


async def committed_and_ends(bootstrap: str, group: str, topic: str):  # type: ignore[no-untyped-def]
    async with Consumer(bootstrap, group) as c:
        ends = {p: (await c.watermarks(topic, p))[1] for p in range(3)}
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 30
        while True:
            committed = await c.committed([(topic, p) for p in range(3)])
            found = {p: committed[(topic, p)] for p in range(3)}
            if all(found[p].offset == ends[p] for p in range(3)) or loop.time() > give_up:
                return found, ends
            await asyncio.sleep(0.2)
