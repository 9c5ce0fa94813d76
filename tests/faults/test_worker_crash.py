"""kill -9 of a worker in the middle of ten streams: every job still ends exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from schemas.rules import TERMINAL_EVENT_TYPES
from tests.support.jobs import submit
from tests.support.topic_reader import by_job, events_reader, of_type
from tests.support.workers import two_workers_and_ingest

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

STREAM = {"max_tokens": 40, "provider_options": {"tokens_per_s": 10}}
"""Four seconds per stream."""


async def test_kill_9_mid_stream_each_job_ends_once(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(worker_concurrency=8, worker_session_timeout_ms=6000)
    t = settings.topics
    with two_workers_and_ingest(settings, tmp_path) as (wa, wb, base):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
        ):
            ids = [await submit(client, prompt=f"stream {i}", **STREAM) for i in range(10)]
            events = await log.until(
                lambda ev: len({e.job_id for e in of_type(ev, "token")}) == 10,
                what="ten streams under way",
            )
            running_on = Counter(e.worker_id for e in of_type(events, "started"))
            victim = wa if running_on[wa.worker_id] >= running_on[wb.worker_id] else wb
            survivor = wb if victim is wa else wa
            victim.kill()
            killed_at = time.time_ns() // 1000
            events = await log.until(
                lambda ev: {e.job_id for e in of_type(ev, *TERMINAL_EVENT_TYPES)} >= set(ids),
                timeout=90,
                what="every job ended",
            )

    ended = Counter(e.job_id for e in of_type(events, *TERMINAL_EVENT_TYPES))
    assert set(ended) == set(ids)
    assert max(ended.values()) == 1, f"jobs ended twice: {ended.most_common(3)}"
    waits, interrupted = [], 0
    for job_id in ids:
        mine = by_job(events, job_id)
        (terminal,) = of_type(mine, *TERMINAL_EVENT_TYPES)
        assert terminal.type == "completed"
        final_tokens = [e.text for e in of_type(mine, "token") if e.attempt == terminal.attempt]
        assert terminal.content == "".join(final_tokens)
        if terminal.worker_id == victim.worker_id:
            assert terminal.ts < killed_at, "the victim ended this job before it died"
            continue
        on_victim = [e.attempt for e in of_type(mine, "started") if e.worker_id == victim.worker_id]
        if on_victim:
            interrupted += 1
            assert terminal.attempt > max(on_victim), "an interrupted job ends as a later attempt"
            restart = of_type(mine, "started")[-1]
            assert restart.worker_id == survivor.worker_id
            waits.append((restart.ts - killed_at) / 1e6)
    assert interrupted, "the kill interrupted some streams"
    span = f"{min(waits):.2f}-{max(waits):.2f}s"
    print(f"\n{interrupted} jobs redelivered; they restarted {span} after the kill")
