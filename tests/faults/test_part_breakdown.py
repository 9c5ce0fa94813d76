"""A worker whose loop stops for good exits (code 70) to be started again; its jobs go on.

The loop is broken from outside (``tests.support.broken_loop``) in the middle of ten
streams over two worker processes. What an operator relies on: the process does not
linger as a live husk that answers ``/healthz`` and runs nothing — it logs why, shuts
down as on SIGTERM and exits with ``EXIT_BROKEN``, so ``tokenrelay up``, Kubernetes or
Compose starts a fresh one; and every job still ends exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.breakdown import EXIT_BROKEN
from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import events_reader, of_type
from tests.support.workers import ChildProcess, worker_process

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

STREAM = {"max_tokens": 40, "provider_options": {"tokens_per_s": 10}}
"""Four seconds per stream."""


async def exit_code(child: ChildProcess, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (code := child.proc.poll()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{child.name} still runs {timeout:.0f}s on:\n{child.tail()}")
        await asyncio.sleep(0.1)
    return code


async def test_a_broken_worker_loop_ends_the_process_and_no_job(  # type: ignore[no-untyped-def]
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(
        worker_concurrency=8, worker_session_timeout_ms=6000, worker_grace_s=1.0
    )
    t = settings.topics
    marker = tmp_path / "break-now"
    run = uuid.uuid4().hex[:6]
    broken_env = {"BREAK_WORKER_LOOP_WHEN": str(marker)}
    with (
        worker_process(
            settings, f"wa-{run}", tmp_path, "tests.support.broken_loop", broken_env
        ) as wa,
        worker_process(settings, f"wb-{run}", tmp_path) as wb,
        running(settings, ["ingest"]) as base,
    ):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
        ):
            ids = [await submit(client, prompt=f"stream {i}", **STREAM) for i in range(10)]
            await log.until(
                lambda ev: any(e.worker_id == wa.worker_id for e in of_type(ev, "token")),
                what="streams under way on the worker about to break",
            )
            marker.touch()
            code = await exit_code(wa, timeout=60)
            events = await log.until(
                lambda ev: {e.job_id for e in of_type(ev, *TERMINAL_EVENT_TYPES)} >= set(ids),
                timeout=90,
                what="every job ended",
            )
            assert wb.proc.poll() is None, "the sound worker runs on"

    said = wa.log.read_text(errors="replace")
    assert code == EXIT_BROKEN, f"exit code {code}:\n{wa.tail()}"
    assert "the worker loop stopped: RuntimeError('a bug in the loop" in said
    assert "the process shuts down to be started again" in said
    ended = Counter(e.job_id for e in of_type(events, *TERMINAL_EVENT_TYPES))
    assert set(ended) == set(ids)
    assert max(ended.values()) == 1, f"jobs ended twice: {ended.most_common(3)}"
    assert {e.type for e in of_type(events, *TERMINAL_EVENT_TYPES)} == {"completed"}
