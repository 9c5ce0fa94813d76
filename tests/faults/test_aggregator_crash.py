"""kill -9 the aggregator under load, start it again: the same states, nothing counted twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from schemas.state import JobState
from services.aggregator.reducer import reduce
from services.core.settings import Settings
from tests.conftest import ALICE
from tests.support.aggregators import aggregator_process, get_state, with_aggregator_port
from tests.support.stack import running
from tests.support.topic_reader import TopicReader, events_reader
from tests.support.workers import ChildProcess

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

JOBS = 120


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
async def test_kill_9_under_load_then_restart(
    make_settings: Callable[..., Settings], tmp_path: Path, store: str
) -> None:
    settings = with_aggregator_port(
        make_settings(state_store=store, fake_tokens_per_s=100.0, state_tick_s=0.2)
    )
    with running(settings, ["ingest", "gateway", "worker"]) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            with aggregator_process(settings, tmp_path) as agg:
                r = await c.post(
                    "/v1/batches",
                    json={"jobs": [{"prompt": f"p{i}", "max_tokens": 60} for i in range(JOBS)]},
                    headers=ALICE,
                )
                assert r.status_code == 202, r.text
                batch_id, jobs = r.json()["batch_id"], r.json()["job_ids"]
                await _when_some_finished(c, batch_id, at_least=JOBS // 6)
                before = {j: get_state(agg.url, j) for j in jobs}
                agg.kill()
            unfinished_at_kill = sum(1 for s in before.values() if s and s["finished_at"] is None)
            assert unfinished_at_kill, "the kill came while jobs were still running"

            t0 = time.monotonic()
            with aggregator_process(settings, tmp_path) as agg:
                recovered_s = time.monotonic() - t0
                print(f"\n{store}: ready again {recovered_s:.2f}s after the restart")
                for job, state in before.items():
                    if state and state["finished_at"] is not None:
                        assert get_state(agg.url, job) == state, "a finished job's state changed"
                after = await _when_all_finished(agg, jobs, settings)
                batch = (await c.get(f"/v1/batches/{batch_id}", headers=ALICE)).json()

    async with events_reader(
        settings.kafka_bootstrap, settings.topics.tokens, settings.topic_partitions
    ) as reader:
        await reader.until(lambda _: True)
        expected: dict[str, JobState] = {}
        give_up = time.monotonic() + 30
        while len([s for s in expected.values() if s.status.finished]) < JOBS:
            assert time.monotonic() < give_up
            expected = {}
            for rec, ev in reader.items:
                expected[ev.job_id] = reduce(
                    expected.get(ev.job_id), ev, partition=rec.partition, offset=rec.offset
                )
            await reader.until(lambda _: True)
    for job in jobs:
        assert after[job] == expected[job].model_dump(mode="json", by_alias=True), job

    assert batch["total"] == JOBS
    assert batch["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": JOBS,
        "failed": 0,
        "cancelled": 0,
    }
    assert batch["progress_pct"] == 100.0


async def _when_some_finished(c: httpx.AsyncClient, batch_id: str, at_least: int) -> None:
    give_up = time.monotonic() + 60
    while True:
        r = await c.get(f"/v1/batches/{batch_id}", headers=ALICE)
        if r.status_code == 200 and r.json()["counts"]["succeeded"] >= at_least:
            return
        assert time.monotonic() < give_up, f"not {at_least} finished: {r.text}"
        await asyncio.sleep(0.05)


async def _when_all_finished(
    agg: ChildProcess, jobs: list[str], settings: Settings
) -> dict[str, Any]:
    """Every job's state once all are final; on a timeout, which are not, what the tokens
    and lifecycle topics hold of them (where each event sits), and the aggregator's log."""
    give_up = time.monotonic() + 60
    with httpx.Client(timeout=10) as http:
        while True:
            states = {j: get_state(agg.url, j, http) for j in jobs}
            unfinished = {j: s for j, s in states.items() if not s or s["finished_at"] is None}
            if not unfinished:
                return states
            if time.monotonic() > give_up:
                break
            await asyncio.sleep(0.2)
    topics = settings.topics
    in_topics = {
        topic: await _whole_topic(settings, topic, set(unfinished))
        for topic in (topics.tokens, topics.lifecycle)
    }
    changelog = await _changelog(settings, set(unfinished))
    pytest.fail(
        f"{len(unfinished)} jobs not final after 60 s\nstates: {unfinished}\n"
        f"their events other than tokens: {in_topics}\n"
        f"their states in the changelog: {changelog}\n"
        f"aggregator log:\n{agg.tail(120)}"
    )


async def _whole_topic(settings: Settings, topic: str, jobs: set[str]) -> dict[str, list[str]]:
    """Each job's events other than tokens on ``topic``, as ``type@partition:offset``, read
    until a poll brings nothing new."""
    async with events_reader(settings.kafka_bootstrap, topic, settings.topic_partitions) as r:
        items = await r.drain()
    found: dict[str, list[str]] = {j: [] for j in jobs}
    for rec, ev in items:
        if ev.job_id in jobs and ev.type != "token":
            found[ev.job_id].append(f"{ev.type}@{rec.partition}:{rec.offset}")
    return found


async def _changelog(settings: Settings, jobs: set[str]) -> dict[str, list[str]]:
    """Each job's states in the jobs table's changelog, as ``status/seq@partition:offset``."""
    topic = f"{settings.topic_prefix}-aggregator-jobs-changelog"
    keep = {j.encode() for j in jobs}
    reader = TopicReader(settings.kafka_bootstrap, topic, settings.topic_partitions, bytes)
    async with reader as r:
        items = await r.drain()
    found: dict[str, list[str]] = {j: [] for j in jobs}
    for rec, raw in items:
        if rec.key in keep:
            state = orjson.loads(raw)
            where = f"{rec.partition}:{rec.offset}"
            found[rec.key.decode()].append(f"{state['status']}/{state['seq']}@{where}")
    return found
