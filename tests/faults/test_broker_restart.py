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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from schemas.events import TERMINAL_EVENT_TYPES
from services.core.local_kafka import LocalBroker, free_port
from services.core.settings import Settings
from tests.conftest import ALICE
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.jobs import submit
from tests.support.sse import SseEvent, SseParser
from tests.support.topic_reader import by_job, events_reader, of_type
from tests.support.workers import ChildProcess, child_process, settings_env, worker_process

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

JOBS = 6
TOKENS = 120
STREAM = {"max_tokens": TOKENS, "provider_options": {"tokens_per_s": 12}}
"""Ten seconds of tokens per job: the broker dies while every job streams."""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A single-node broker of this test's own, to kill and start again."""
    defaults = Settings()
    broker = LocalBroker(
        tmp_path / "kafka",
        "127.0.0.1",
        free_port(),
        free_port(),
        defaults.kafka_version,
        defaults.kafka_cache_dir,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def public_process(settings: Settings, log_dir: Path) -> Iterator[ChildProcess]:
    """Ingest, gateway and analytics in one child process, as ``make up`` runs them."""
    port = free_port()
    env = {**settings_env(settings), "TOKENRELAY_DATA_DIR": str(log_dir / "public")}
    args = ["serve", "ingest", "gateway", "analytics", "--port", str(port)]
    with child_process("public", args, env, log_dir, port) as child:
        yield child


async def watch(
    client: httpx.AsyncClient, url: str, events: list[SseEvent], reconnects: list[int]
) -> list[SseEvent]:
    """Every event of one job's SSE stream up to its end, resuming at Last-Event-ID on a break."""
    while True:
        headers = dict(ALICE)
        if events and events[-1].id is not None:
            headers["Last-Event-ID"] = events[-1].id
        parser = SseParser()
        try:
            async with client.stream("GET", url, headers=headers) as resp:
                assert resp.status_code == 200, await resp.aread()
                async for line in resp.aiter_lines():
                    ev = parser.feed(line)
                    if ev is None:
                        continue
                    events.append(ev)
                    if ev.event in TERMINAL_EVENT_TYPES:
                        return events
        except httpx.TransportError:
            pass
        reconnects.append(1)
        await asyncio.sleep(0.2)


async def readiness(client: httpx.AsyncClient, url: str) -> int | None:
    try:
        return (await client.get(f"{url}/readyz", timeout=1.0)).status_code
    except httpx.HTTPError:
        return None


async def seconds_until(
    client: httpx.AsyncClient, parts: dict[str, ChildProcess], status: int, timeout: float
) -> dict[str, float]:
    """Per part, seconds until its ``/readyz`` answered ``status`` (fails after ``timeout``)."""
    started, seen = time.monotonic(), {}
    while len(seen) < len(parts):
        for name, child in parts.items():
            if name not in seen and await readiness(client, child.url) == status:
                seen[name] = round(time.monotonic() - started, 1)
        elapsed = time.monotonic() - started
        assert elapsed < timeout, f"/readyz {status} not reached in {timeout}s: only {seen}"
        await asyncio.sleep(0.1)
    return seen


@pytest.mark.timeout(300)
async def test_broker_kill_9_and_restart_loses_nothing(
    make_settings: Callable[..., Settings], own_broker: LocalBroker, tmp_path: Path
) -> None:
    broker = own_broker
    with ExitStack() as stack:
        settings = with_aggregator_port(
            make_settings(kafka_bootstrap=broker.bootstrap, worker_session_timeout_ms=6000)
        )
        parts = {
            "aggregator": stack.enter_context(aggregator_process(settings, tmp_path)),
            "worker": stack.enter_context(worker_process(settings, "worker", tmp_path)),
            "public": stack.enter_context(public_process(settings, tmp_path)),
        }
        pids = {name: child.proc.pid for name, child in parts.items()}
        base = parts["public"].url
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            ids = [await submit(client, prompt=f"ride it out {i}", **STREAM) for i in range(JOBS)]
            reconnects: list[int] = []
            seen: list[list[SseEvent]] = [[] for _ in ids]
            watchers = [
                asyncio.create_task(watch(client, f"/v1/jobs/{j}/events", evs, reconnects))
                for j, evs in zip(ids, seen, strict=True)
            ]
            deadline = time.monotonic() + 60
            while not all(any(e.event == "token" for e in evs) for evs in seen):
                assert time.monotonic() < deadline, "the jobs did not all begin to stream"
                await asyncio.sleep(0.1)

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

            watched = await asyncio.wait_for(asyncio.gather(*watchers), timeout=120)
            after = await client.post("/v1/jobs", json={"prompt": "after"}, headers=ALICE)
            assert after.status_code == 202, after.text

        async with events_reader(broker.bootstrap, settings.topics.tokens, 3) as log:
            events = await log.until(
                lambda ev: {e.job_id for e in of_type(ev, *TERMINAL_EVENT_TYPES)} >= set(ids),
                timeout=60,
                what="every accepted job ended",
            )
        for name, child in parts.items():
            assert child.proc.poll() is None, f"{name} exited:\n{child.tail()}"
            assert child.proc.pid == pids[name]

    ended = Counter(e.job_id for e in of_type(events, *TERMINAL_EVENT_TYPES) if e.job_id in ids)
    assert set(ended) == set(ids), "no accepted job lost"
    assert max(ended.values()) == 1, f"jobs ended twice: {ended.most_common(3)}"
    for job_id, mine in zip(ids, watched, strict=True):
        (terminal,) = of_type(by_job(events, job_id), *TERMINAL_EVENT_TYPES)
        assert terminal.type == "completed"
        last = mine[-1]
        assert last.event == "completed" and last.data["content"] == terminal.content
        attempt = last.data["attempt"]
        tokens = [e for e in mine if e.event == "token" and e.data["attempt"] == attempt]
        assert [t.data["index"] for t in tokens] == list(range(1, TOKENS + 1)), "watcher whole"
        assert "".join(str(t.data["text"]) for t in tokens) == terminal.content
        assert len({e.id for e in mine}) == len(mine), "no event twice on a watcher"
    attempts = Counter(terminal.attempt for terminal in of_type(events, "completed"))
    print(
        f"\n{JOBS} jobs: lost 0, twice 0, ended at attempts {dict(attempts)}; "
        f"readyz 503 after the kill {down}; outage submit 503 in {outage_submit_s:.2f}s; "
        f"broker restart {broker_start_s:.1f}s; readyz 200 after it answered {back}; "
        f"watchers resumed {len(reconnects)} times"
    )
