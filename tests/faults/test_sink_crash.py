"""kill -9 of the analytics sink between a batch's intent and its end: the restarted sink
inserts that batch again under the same token, and nothing is lost or counted twice.

The sink runs in a child process on a chDB directory of its own; ingest and a
worker run in this process and keep jobs flowing. The kill is aimed, so that the
repeated batch really meets rows it already stored: the test watches the group's
committed notes, and once one says a batch holding a job's ``completed`` event is
being inserted (``sink/1 through=<last>``, which stands for 35-300 ms of each
batch here) it asks the sink's SQL endpoint whether that batch's ``job_events``
rows are in; once they are, it stops the sink (SIGSTOP), so the note cannot move,
looks again that the note still stands, and kills; a batch that ended between the
two looks is let go (SIGCONT) and the next one aimed at. Then it checks that the
note outlived the kill (only an end commit already in flight at the stop defeats
it). A restarted sink waits out the dead member's session
(``sink_session_timeout_ms``, 6 s here) before it is assigned, so another kill is
tried only if the first missed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schemas.events import Completed, JobEvent
from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ALICE, BOB
from tests.support.analytics import (
    SinkOffsets,
    analytics_caught_up,
    analytics_process,
    completed_events,
    get_rows,
    run_sql,
    totals_from_completed,
    totals_of_rows,
    write_prices,
)
from tests.support.metrics import metric_total
from tests.support.polling import until
from tests.support.stack import running
from tests.support.topic_reader import TopicReader, events_reader
from tests.support.workers import ChildProcess

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

MAX_KILLS = 3
"""Each restart after a kill waits out the session timeout; a frozen aim nearly always lands."""
WAVE = 10
WAVE_EVERY_S = 0.1
FEED_AFTER_KILL_S = 3.0
"""Jobs keep arriving while the sink is down; it must catch up on them too."""
STEADY_JOBS = 50
"""Jobs the sink has stored before the kill is aimed: it is past its first batches."""


class Feeder:
    """Submits waves of short jobs of two tenants between ``resume()`` and ``pause()``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.job_ids: list[str] = []
        self._on = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feeder:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopped = True
        self._on.set()
        assert self._task is not None
        await self._task

    def resume(self) -> None:
        self._on.set()

    async def pause(self) -> None:
        """Stop submitting; returns once no request is in flight (before the test blocks its
        loop on a child's start, which would leave a request on a connection gone stale)."""
        self._on.clear()
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            self._idle.set()
            await self._on.wait()
            self._idle.clear()
            if self._stopped:
                return
            n = len(self.job_ids)
            jobs = [
                {
                    "prompt": f"job {n + k}",
                    "max_tokens": 5 + (n + k) % 20,
                    "priority": ("high", "normal", "low")[(n + k) % 3],
                    "provider_options": {"tokens_per_s": 200},
                }
                for k in range(WAVE)
            ]
            who = ALICE if (n // WAVE) % 2 else BOB
            r = await self.client.post("/v1/batches", json={"jobs": jobs}, headers=who)
            assert r.status_code == 202, r.text
            self.job_ids += r.json()["job_ids"]
            await asyncio.sleep(WAVE_EVERY_S)


@dataclass(frozen=True)
class Aim:
    """The batch a kill was aimed at, and how much of it the sink had stored then."""

    partition: int
    start: int
    through: int
    events_stored: int
    jobs_stored: int


async def kill_inside_a_batch(
    sink: ChildProcess, offsets: SinkOffsets, log: TopicReader[JobEvent], timeout: float = 30.0
) -> Aim | None:
    """kill -9 the sink once a batch holding a ``completed`` event has its ``job_events``
    rows stored and its intent still committed; the batch, if the intent outlived the kill."""
    give_up = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=sink.url, timeout=10) as api:
        while True:
            assert time.monotonic() < give_up, "no batch caught between its inserts and its end"
            for p, (start, through) in _with_a_completed(await offsets.intents(), log).items():
                events, jobs = await _stored(api, p, start, through)
                if not events or (await offsets.intents()).get(p) != (start, through):
                    continue
                sink.freeze()
                if (await offsets.intents()).get(p) != (start, through):
                    sink.thaw()  # the batch ended between the two looks: aim again
                    continue
                sink.kill()
                if (await offsets.intents()).get(p) != (start, through):
                    return None  # an end commit was already on its way when it stopped
                return Aim(p, start, through, events, jobs)


async def _stored(api: httpx.AsyncClient, p: int, start: int, through: int) -> tuple[int, int]:
    """Rows of these records the sink has stored in ``job_events`` and in ``jobs``."""
    where = f"WHERE kafka_partition = {p} AND kafka_offset BETWEEN {start} AND {through}"
    ((events, jobs),) = await run_sql(
        api,
        f"SELECT (SELECT count() FROM job_events {where}), (SELECT count() FROM jobs {where})",
    )
    return events, jobs


def _with_a_completed(
    intents: dict[int, tuple[int, int]], log: TopicReader[JobEvent]
) -> dict[int, tuple[int, int]]:
    """The intents whose records include a ``completed`` event the reader has seen."""
    ends = {(rec.partition, rec.offset) for rec, e in log.items if isinstance(e, Completed)}
    return {
        p: (start, through)
        for p, (start, through) in intents.items()
        if any((p, o) in ends for o in range(start, through + 1))
    }


async def test_kill_9_inside_a_batch_then_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(
        prices=write_prices(tmp_path),
        worker_concurrency=32,
        sink_flush_s=0.05,
        sink_session_timeout_ms=6000,
    )
    port, chdb_dir = free_port(), tmp_path / "chdb-analytics"
    aim: Aim | None = None
    with running(settings, ["ingest", "worker"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as c,
            Feeder(c) as feeder,
            SinkOffsets(settings) as offsets,
            events_reader(
                settings.kafka_bootstrap, settings.topics.lifecycle, settings.topic_partitions
            ) as log,
        ):
            following = asyncio.Event()
            follow = asyncio.create_task(log.until(lambda _: following.is_set(), timeout=110))
            kills = 0
            while aim is None:
                assert kills < MAX_KILLS, f"{kills} kills, each after the batch had ended"
                name = f"analytics-{kills}"
                with analytics_process(settings, tmp_path, port, chdb_dir, name) as sink:
                    feeder.resume()
                    async with httpx.AsyncClient(base_url=sink.url, timeout=30) as a:
                        await analytics_caught_up(a, STEADY_JOBS)
                    aim = await kill_inside_a_batch(sink, offsets, log)
                    left = await offsets.intents()
                    kills += 1
                    print(f"\nkill {kills}: {aim}; intents left {left}")
                await asyncio.sleep(FEED_AFTER_KILL_S)
                await feeder.pause()

            t0 = time.monotonic()
            name = "analytics-restarted"
            with analytics_process(settings, tmp_path, port, chdb_dir, name) as sink:
                print(f"restarted sink assigned after {time.monotonic() - t0:.1f}s")
                topic = settings.topics.lifecycle
                log_text = sink.log.read_text()
                for p, (start, through) in left.items():
                    line = f"{topic}[{p}]: repeating the batch {start}-{through}"
                    assert line in log_text, f"not in the restarted sink's log: {line}"
                await until(
                    lambda: asyncio.to_thread(_replayed_batches, sink.url),
                    lambda n: n >= len(left),
                    timeout=30,
                )
                ids = set(feeder.job_ids)
                following.set()
                await follow
                events = await log.until(
                    lambda ev: sum(isinstance(e, Completed) for e in ev) >= len(ids),
                    what="every job completed",
                )
                async with httpx.AsyncClient(base_url=sink.url, timeout=30) as a:
                    await analytics_caught_up(a, len(ids))
                    by_tenant = await get_rows(a, "cost", group_by="tenant")
                    by_priority = await get_rows(a, "cost", group_by="priority")
                    flow = await get_rows(a, "throughput", interval="hour")
                    jobs_table = await run_sql(
                        a, "SELECT count(), uniqExact(job_id, attempt) FROM jobs"
                    )
                    events_table = await run_sql(
                        a, "SELECT count(), uniqExact(job_id, attempt, seq, type) FROM job_events"
                    )
                    (alice,) = await get_rows(a, "cost", ALICE, group_by="tenant")

    done = completed_events(events)
    assert {e.job_id for e in done} == ids
    total = totals_from_completed(done)
    assert total.cost_usd > 0
    assert totals_of_rows(by_tenant) == total
    assert totals_of_rows(by_priority) == total
    assert totals_of_rows([alice]) == totals_from_completed(e for e in done if e.tenant == "alice")
    assert sum(r["jobs"] for r in flow) == len(ids)
    assert sum(r["tokens"] for r in flow) == total.completion_tokens
    assert jobs_table == [[len(ids), len(ids)]], "one row per job in the source table, none twice"
    lifecycle = {(e.job_id, e.attempt, e.seq, e.type) for e in events if e.type != "token"}
    assert events_table == [[len(lifecycle), len(lifecycle)]], "each lifecycle event stored once"
    print(f"{len(ids)} jobs, {len(lifecycle)} lifecycle events, batches repeated: {left}")


def _replayed_batches(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return metric_total(text, "tokenrelay_sink_replayed_batches_total")
