"""Watching jobs through one gateway: resume, late joins, many watchers, cursors."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.partitioner import partition_for
from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.aggregators import stack_with_aggregator, with_aggregator_port
from tests.support.jobs import submit
from tests.support.polling import until
from tests.support.sse import SseEvent, read_events_async
from tests.support.stack import running

pytestmark = pytest.mark.kafka


def idents(events: list[SseEvent]) -> list[tuple[str | None, str, dict[str, Any]]]:
    return [(e.id, e.event, e.data) for e in events]


def events_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"


async def test_a_resumed_stream_continues_exactly_after_its_last_id(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        job = await submit(
            c, prompt="resume me", max_tokens=150, provider_options={"tokens_per_s": 150}
        )
        head = await read_events_async(c, events_url(job), ALICE, limit=30)
        assert head[-1].event == "token", "the first read stopped mid-job"
        rest = await read_events_async(
            c, events_url(job), {**ALICE, "Last-Event-ID": str(head[-1].id)}
        )
        whole = await read_events_async(c, events_url(job), ALICE)
    assert idents(head + rest) == idents(whole)
    assert whole[-1].event == "completed"
    assert len([e for e in whole if e.event == "token"]) == 150
    ids = [int(str(e.id)) for e in whole]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize("with_state", [False, True], ids=["by-seek", "from-job-state"])
async def test_late_joiners_see_what_an_early_watcher_saw(
    make_settings: Any, tmp_path: Path, with_state: bool
) -> None:
    settings = make_settings()
    if with_state:
        stack_cm = stack_with_aggregator(with_aggregator_port(settings), tmp_path)
    else:
        stack_cm = running(settings, ["ingest", "gateway", "worker"])
    with stack_cm as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            job = await submit(
                c, prompt="late", max_tokens=200, provider_options={"tokens_per_s": 100}
            )
            early_got: list[int] = []
            early = asyncio.create_task(
                read_events_async(c, events_url(job), ALICE, received_us=early_got)
            )
            await _until(lambda: len(early_got) >= 40)
            during = await read_events_async(c, events_url(job), ALICE)
            early_events = await early
            after = await read_events_async(c, events_url(job), ALICE)
    assert early_events[0].event == "queued" and early_events[-1].event == "completed"
    assert idents(during) == idents(early_events)
    assert idents(after) == idents(early_events)


async def test_200_watchers_of_one_job_and_200_jobs_with_one_watcher_each(stack: str) -> None:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=stack, timeout=120, limits=limits) as c:
        shared = await submit(
            c, prompt="shared", max_tokens=40, provider_options={"tokens_per_s": 40}
        )
        own = await asyncio.gather(
            *(submit(c, prompt=f"own {i}", max_tokens=20) for i in range(200))
        )
        reads = [read_events_async(c, events_url(shared), ALICE) for _ in range(200)]
        reads += [read_events_async(c, events_url(j), ALICE) for j in own]
        streams = await asyncio.gather(*reads)
        metrics = await until(
            lambda: c.get("/metrics"), lambda r: "tokenrelay_stream_consumer_lag 0.0" in r.text
        )
    shared_streams, own_streams = streams[:200], streams[200:]
    for events in shared_streams:
        assert idents(events) == idents(shared_streams[0])
    for job, events in [(shared, shared_streams[0]), *zip(own, own_streams, strict=True)]:
        assert events[-1].event == "completed", job
        tokens = [e.data["index"] for e in events if e.event == "token"]
        assert tokens == list(range(1, len(tokens) + 1))
        assert {e.data["job_id"] for e in events} == {job}
    assert len([e for e in shared_streams[0] if e.event == "token"]) == 40
    assert 'tokenrelay_streams_open{transport="sse"} 0.0' in metrics.text


async def test_cursors_a_stream_cannot_use(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        job = await submit(c, prompt="cursor", max_tokens=5)
        neighbour = await _submit_on_the_partition_of(c, job)
        events = await read_events_async(c, events_url(job), ALICE)
        theirs = await read_events_async(c, events_url(neighbour), ALICE)
        last = str(events[-1].id)
        r = await c.get(events_url(job), headers={**ALICE, "Last-Event-ID": last})
        assert r.status_code == 204, "resuming after the terminal event: nothing more, stop"
        beyond = str(int(last) + 10_000)
        for cursor, status in (("abc", 422), ("-3", 422), (str(theirs[1].id), 409), (beyond, 409)):
            r = await c.get(events_url(job), headers={**ALICE, "Last-Event-ID": cursor})
            assert r.status_code == status, (cursor, r.text)
            assert r.json()["error"]["field"] == "Last-Event-ID"
        r = await c.get(events_url(job), headers={**BOB, "Last-Event-ID": str(events[2].id)})
        assert r.status_code == 404, "a cursor does not open another tenant's job"


async def _submit_on_the_partition_of(c: httpx.AsyncClient, job: str) -> str:
    partitions = Settings().topic_partitions
    for i in range(100):
        other = await submit(c, prompt=f"neighbour {i}", max_tokens=5)
        if partition_for(other, partitions) == partition_for(job, partitions):
            return other
    raise AssertionError("no job landed on the same partition")


async def _until(cond: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not cond():
        assert loop.time() < give_up, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_stopping_gateway_ends_its_streams_so_clients_resume_elsewhere(
    make_settings: Any,
) -> None:
    settings = make_settings(worker_grace_s=1)
    with ExitStack() as stack:
        base = stack.enter_context(running(settings, ["ingest", "gateway", "worker"]))
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            job = await submit(
                c, prompt="long", max_tokens=2000, provider_options={"tokens_per_s": 50}
            )
            got: list[int] = []
            reader = asyncio.create_task(
                read_events_async(c, events_url(job), ALICE, received_us=got)
            )
            await _until(lambda: len(got) >= 5)
            stopping = asyncio.create_task(asyncio.to_thread(stack.close))
            events = await asyncio.wait_for(reader, 10)
            await stopping
    assert events[-1].event == "token", "the stream ended cleanly before the job did"


async def test_a_quiet_stream_gets_heartbeats(make_settings: Any) -> None:
    with running(make_settings(stream_heartbeat_s=0.2), ["ingest", "gateway", "worker"]) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            job = await submit(c, prompt="slow", max_tokens=3, provider_options={"tokens_per_s": 1})
            lines = []
            async with c.stream("GET", events_url(job), headers=ALICE) as resp:
                async for line in resp.aiter_lines():
                    lines.append(line)
    beats = [i for i, line in enumerate(lines) if line == ": keep-alive"]
    tokens = [i for i, line in enumerate(lines) if line == "event: token"]
    assert len(beats) >= 3, "a second between tokens holds several 0.2 s heartbeats"
    assert any(tokens[0] < b < tokens[-1] for b in beats), "between events, not only at the end"
    assert "event: completed" in lines


OPEN_SSE = 'tokenrelay_streams_open{transport="sse"} '


def _open_streams(metrics: httpx.Response) -> float:
    lines = [x for x in metrics.text.splitlines() if x.startswith(OPEN_SSE)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


async def test_a_client_that_leaves_a_quiet_stream_frees_it(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        before = _open_streams(await c.get("/metrics"))
        job = await submit(c, prompt="quiet", max_tokens=3, provider_options={"tokens_per_s": 0.5})
        events = await read_events_async(c, events_url(job), ALICE, limit=2)
        assert [e.event for e in events] == ["queued", "started"]
        await until(lambda: c.get("/metrics"), lambda r: _open_streams(r) == before)
        resumed = await read_events_async(
            c, events_url(job), {**ALICE, "Last-Event-ID": str(events[-1].id)}, limit=1
        )
    assert resumed[0].event == "token" and resumed[0].data["index"] == 1
