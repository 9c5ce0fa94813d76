"""What the broker-fault tests share: the public face as a process, resuming watchers, readiness."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from schemas.events import JobEvent
from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ALICE
from tests.support.aggregators import aggregator_process
from tests.support.jobs import submit
from tests.support.sse import SseEvent, SseParser
from tests.support.topic_reader import by_job, events_reader, of_type
from tests.support.workers import ChildProcess, child_process, settings_env, worker_process


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
    return (await readiness_answer(client, url))[0]


async def readiness_answer(client: httpx.AsyncClient, url: str) -> tuple[int | None, str]:
    """``/readyz``'s status and body, or None and why nothing answered within a second."""
    try:
        resp = await client.get(f"{url}/readyz", timeout=1.0)
    except httpx.HTTPError as exc:
        return None, f"no answer: {exc!r}"
    return resp.status_code, resp.text


async def seconds_until(
    client: httpx.AsyncClient, parts: dict[str, ChildProcess], status: int, timeout: float
) -> dict[str, float]:
    """Per part, seconds until its ``/readyz`` answered ``status`` (fails after ``timeout``).

    The failure names each part still waited for with its last answer and its log's end.
    """
    started, seen, last = time.monotonic(), {}, {}
    while len(seen) < len(parts):
        for name, child in parts.items():
            if name in seen:
                continue
            last[name] = await readiness_answer(client, child.url)
            if last[name][0] == status:
                seen[name] = round(time.monotonic() - started, 1)
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            waited = "\n".join(
                f"--- {name}: last /readyz {last[name][0]} {last[name][1]}\n{parts[name].tail()}"
                for name in parts
                if name not in seen
            )
            raise AssertionError(f"/readyz {status} not in {timeout}s: only {seen}\n{waited}")
        await asyncio.sleep(0.1)
    return seen


@contextmanager
def three_parts(settings: Settings, log_dir: Path) -> Iterator[dict[str, ChildProcess]]:
    """The aggregator, a worker and the public face, each its own process, all ready."""
    with (
        aggregator_process(settings, log_dir) as aggregator,
        worker_process(settings, "worker", log_dir) as worker,
        public_process(settings, log_dir) as public,
    ):
        yield {"aggregator": aggregator, "worker": worker, "public": public}


class WatchedJobs:
    """Jobs submitted over HTTP, each with an SSE watcher that resumes on a break."""

    def __init__(self, client: httpx.AsyncClient, tokens: int) -> None:
        self.client, self.tokens = client, tokens
        self.ids: list[str] = []
        self.seen: list[list[SseEvent]] = []
        self.reconnects: list[int] = []
        self._watchers: list[asyncio.Task[list[SseEvent]]] = []

    async def submit(self, count: int, tokens_per_s: float) -> None:
        stream = {"max_tokens": self.tokens, "provider_options": {"tokens_per_s": tokens_per_s}}
        for i in range(count):
            job_id = await submit(self.client, prompt=f"ride it out {i}", **stream)
            events: list[SseEvent] = []
            self.ids.append(job_id)
            self.seen.append(events)
            url = f"/v1/jobs/{job_id}/events"
            watcher = watch(self.client, url, events, self.reconnects)
            self._watchers.append(asyncio.create_task(watcher))

    async def streaming(self, timeout: float = 60.0) -> None:
        """Return once every watcher has seen a token."""
        deadline = time.monotonic() + timeout
        while not all(any(e.event == "token" for e in evs) for evs in self.seen):
            assert time.monotonic() < deadline, "the jobs did not all begin to stream"
            await asyncio.sleep(0.1)

    async def watched(self, timeout: float = 120.0) -> list[list[SseEvent]]:
        return list(await asyncio.wait_for(asyncio.gather(*self._watchers), timeout=timeout))

    def check(self, events: list[JobEvent], watched: list[list[SseEvent]]) -> Counter[int]:
        """Each job ended once, completed; each watcher got it whole. The attempts they ended at."""
        ended = Counter(e.job_id for e in of_type(events, *TERMINAL_EVENT_TYPES))
        assert set(self.ids) <= set(ended), "no accepted job lost"
        assert max(ended[j] for j in self.ids) == 1, f"jobs ended twice: {ended.most_common(3)}"
        attempts: Counter[int] = Counter()
        for job_id, mine in zip(self.ids, watched, strict=True):
            (terminal,) = of_type(by_job(events, job_id), *TERMINAL_EVENT_TYPES)
            assert terminal.type == "completed"
            attempts[terminal.attempt] += 1
            last = mine[-1]
            assert last.event == "completed" and last.data["content"] == terminal.content
            final = terminal.attempt
            tokens = [e for e in mine if e.event == "token" and e.data["attempt"] == final]
            assert [t.data["index"] for t in tokens] == list(range(1, self.tokens + 1))
            assert "".join(str(t.data["text"]) for t in tokens) == terminal.content
            assert len({e.id for e in mine}) == len(mine), "no event twice on a watcher"
        return attempts


async def every_job_ended(bootstrap: str, settings: Settings, ids: list[str]) -> list[JobEvent]:
    """The tokens topic, read committed, once every one of ``ids`` has its terminal event."""
    async with events_reader(bootstrap, settings.topics.tokens, settings.topic_partitions) as log:
        return await log.until(
            lambda ev: {e.job_id for e in of_type(ev, *TERMINAL_EVENT_TYPES)} >= set(ids),
            timeout=60,
            what="every accepted job ended",
        )


def still_running(parts: dict[str, ChildProcess], pids: dict[str, int]) -> None:
    """No part exited or was restarted: each runs as the process it started as."""
    for name, child in parts.items():
        assert child.proc.poll() is None, f"{name} exited:\n{child.tail()}"
        assert child.proc.pid == pids[name], f"{name} was restarted"


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive ports nobody listens on (a local cluster's)."""
    while True:
        base = free_port()
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
