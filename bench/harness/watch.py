"""The load and the watchers, in one child process: submit jobs, watch each one's SSE stream,
and time every token against this process's clock.

The same code drives tokenrelay (``POST /v1/jobs`` then ``GET /v1/jobs/{id}/events``; with
``submit_stream``, one ``POST /v1/jobs`` whose answer is the stream) and the baseline (no
submission: ``GET /stream/{id}?n=…&r=…`` of ``bench.harness.baseline``), so the two differ
only in what serves the stream. A job's stream opens right after its submission answered
(or in the same request), so a token's latency is its trip from the worker's ``ts`` to the
parse here; when many streams open at once, a stream that opens after its job's first
tokens were made receives them late, which the figures after every stream's first token
(``token_latency_settled_ms``) leave out.

Driven over a pipe (``bench.processes.Remote``): ``start`` launches the load and returns,
``stats`` says how far it got (for the progress bar), ``result`` waits for the end and
answers the raw figures, ``close`` hangs up on every stream still open.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.harness.http import Endpoint, HttpError, Pool
from bench.processes import serve_commands, use_uvloop
from bench.sse_clients import READ_BYTES, TERMINAL, StreamError, sse_events, sse_fields

IDLE_OPEN_CONCURRENCY = 100
FRESH_POLL_S = 0.05
"""How often a finished job's state is asked for (``freshness``)."""
ROWS_POLL_S = 0.1
"""How often the jobs still awaited in ClickHouse are asked for, all in one query."""
FRESH_GIVE_UP_S = 120.0
FINAL = {"succeeded", "failed", "cancelled"}
FRESH_BATCH = "fresh-batch"
"""The group, with ``freshness``, of one watched batch whose progress is timed; its tokens
are not counted among the load's."""


def now_us() -> int:
    return time.time_ns() // 1000


class Watch:
    """One stream: the job's events as they arrive, and the moments that matter."""

    __slots__ = (
        "ended_us",
        "first_event_us",
        "first_token_us",
        "group",
        "job_id",
        "opened",
        "requested_us",
        "submit_us",
        "terminal",
        "tokens",
    )

    def __init__(self, job_id: str, group: str, submit_us: int) -> None:
        self.job_id, self.group, self.submit_us = job_id, group, submit_us
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first_token_us = self.requested_us = self.first_event_us = self.ended_us = 0
        self.tokens = 0
        self.terminal = False


class Load:
    """Everything one ``start`` asked for, and what it measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.endpoint = Endpoint(spec["host"], spec["port"], spec.get("api_key"))
        self.baseline: bool = spec["baseline"]
        self.pool = Pool(self.endpoint, spec.get("connections", 32))
        self.latencies_us = array("q")
        self.arrivals_us = array("q")
        """When each token of ``latencies_us`` arrived."""
        self.submit_ms: list[float] = []
        self.queue_wait_ms: dict[str, list[float]] = defaultdict(list)
        self.watches: list[Watch] = []
        self.idle: list[Watch] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.errors: Counter[str] = Counter()
        self.freshness: bool = spec.get("freshness", False)
        self.fresh: list[asyncio.Task[None]] = []
        self.state_lag_ms: list[float] = []
        self.analytics_lag_ms: list[float] = []
        self.batch_lag_ms: list[float] = []
        self.queues_lag_ms: list[float] = []
        self.unrecorded: dict[str, int] = {}
        """Jobs whose state is final, by when their stream ended: their rows are awaited."""
        self.recorder: asyncio.Task[None] | None = None
        self.tokens = self.accepted = 0
        self.first_token_us = self.last_token_us = 0
        self.began_us = self.ended_us = 0
        self.closing = False

    # --- the load -------------------------------------------------------------------

    async def run(self) -> None:
        self.began_us = now_us()
        if self.spec.get("idle_ids"):
            await self._open_idle(self.spec["idle_ids"])
        for group in self.spec["groups"]:
            await self._group(group)
        if self.tasks:
            await asyncio.wait(self.tasks)
        self.ended_us = now_us()
        if self.spec.get("trails") and self.watches:
            await self._queues_trail(max(w.ended_us for w in self.watches))
        if self.fresh:
            await asyncio.wait(self.fresh)
        while self.recorder is not None:
            await asyncio.wait({self.recorder})

    async def _open_idle(self, job_ids: list[str]) -> None:
        """Streams that only ever see ``queued``: open them all before the active load."""
        gate = asyncio.Semaphore(IDLE_OPEN_CONCURRENCY)

        async def one(job_id: str) -> None:
            async with gate:
                watch = Watch(job_id, "idle", now_us())
                self.idle.append(watch)
                task = asyncio.create_task(self._watch(watch, self._path(job_id, 0, 0)))
                await asyncio.wait({watch.opened, task}, return_when=asyncio.FIRST_COMPLETED)

        await asyncio.gather(*(one(j) for j in job_ids))

    async def _group(self, group: dict[str, Any]) -> None:
        """``count`` jobs of ``body``, one every ``interval_s`` (0: all at once); with
        ``batch_size``, in ``POST /v1/batches`` of that many jobs each, unwatched."""
        if group["name"] == FRESH_BATCH:
            if not self.baseline:  # the baseline has no batches
                await self._watched_batch(group)
            return
        if group.get("batch_size"):
            size = group["batch_size"]
            chunks = range(0, group["count"], size)
            await asyncio.gather(
                *(self._batch(group, i, min(size, group["count"] - i)) for i in chunks)
            )
            return
        interval = group.get("interval_s", 0.0)
        started = time.monotonic()
        launched = []
        for i in range(group["count"]):
            if interval:
                await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
            launched.append(asyncio.create_task(self._job(group, i)))
        await asyncio.gather(*launched)

    async def _submit(
        self, path: str, body: dict[str, object]
    ) -> tuple[dict[str, object], int] | None:
        """POST a submission, timed; its answer and when it went out, or None (counted among
        the errors) unless it was accepted."""
        try:
            status, answer, sent_us = await self.pool.post(path, body)
        except HttpError as exc:
            self.errors[str(exc)[:120]] += 1
            return None
        self.submit_ms.append((now_us() - sent_us) / 1000)
        if status != 202:
            self.errors[f"POST {path}: {status} {str(answer)[:80]}"] += 1
            return None
        return answer, sent_us

    async def _batch(self, group: dict[str, Any], first: int, count: int) -> None:
        body, name = group["body"], group["name"]
        jobs = [{**body, "prompt": f"{name} {first + i}"} for i in range(count)]
        accepted = await self._submit("/v1/batches", {"jobs": jobs})
        if accepted is not None:
            self.accepted += len(accepted[0]["job_ids"])  # type: ignore[arg-type]

    async def _watched_batch(self, group: dict[str, Any]) -> None:
        """One ``POST /v1/batches`` whose jobs are watched; once each ended, how long its
        progress takes to read whole (``_batch_trail``)."""
        body, count = group["body"], group["count"]
        jobs = [{**body, "prompt": f"{FRESH_BATCH} {i}"} for i in range(count)]
        accepted = await self._submit("/v1/batches", {"jobs": jobs})
        if accepted is None:
            return
        answer, submit_us = accepted
        watches = [Watch(str(j), FRESH_BATCH, submit_us) for j in answer["job_ids"]]  # type: ignore[attr-defined]
        self.watches.extend(watches)
        tasks = [asyncio.create_task(self._watch(w, self._path(w.job_id, 0, 0))) for w in watches]
        self.tasks.extend(tasks)
        self.fresh.append(
            asyncio.create_task(self._batch_trail(str(answer["batch_id"]), tasks, watches))
        )

    async def _job(self, group: dict[str, Any], i: int) -> None:
        body, name = group["body"], group["name"]
        if self.baseline and group.get("watch", True):
            job_id, submit_us = f"{name}-{i}", now_us()
        elif self.spec.get("submit_stream") and group.get("watch", True):
            watch = Watch("", name, now_us())
            self.watches.append(watch)
            post = {**body, "prompt": f"{name} {i}"}
            self.tasks.append(asyncio.create_task(self._watch(watch, "/v1/jobs", post)))
            return
        else:
            accepted = await self._submit("/v1/jobs", {**body, "prompt": f"{name} {i}"})
            if accepted is None:
                return
            answer, submit_us = accepted
            self.accepted += 1
            job_id = str(answer["job_id"])
        if not group.get("watch", True):
            return
        watch = Watch(job_id, name, submit_us)
        self.watches.append(watch)
        path = self._path(job_id, body["max_tokens"], body["provider_options"]["tokens_per_s"])
        self.tasks.append(asyncio.create_task(self._watch(watch, path)))

    def _path(self, job_id: str, tokens: int, tokens_per_s: float) -> str:
        if self.baseline:
            return f"/stream/{job_id}?n={tokens}&r={tokens_per_s}"
        return f"/v1/jobs/{job_id}/events"

    # --- one stream -----------------------------------------------------------------

    async def _watch(self, watch: Watch, path: str, post: dict[str, object] | None = None) -> None:
        try:
            await self._read(watch, path, post)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, StreamError) as e:
            if not self.closing:
                self.errors[f"{type(e).__name__}: {e}"[:120]] += 1

    async def _read(self, watch: Watch, path: str, post: dict[str, object] | None) -> None:
        """Read the stream of ``GET path``; with ``post``, of ``POST path`` of that job (its
        submission and its stream in one request: ``--submit-stream``)."""
        ep = self.endpoint
        reader, writer = await asyncio.open_connection(ep.host, ep.port, limit=READ_BYTES)
        self.writers.append(writer)
        watch.requested_us = now_us()
        if post is None:
            writer.write(ep.head("GET", path, "Accept: text/event-stream\r\n\r\n"))
        else:
            data = orjson.dumps(post)
            extra = (
                "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            writer.write(ep.head("POST", path, extra) + data)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if post is not None:
            self._submitted(watch, head, status)
        if status != b"200":
            raise StreamError(f"{'GET' if post is None else 'POST'} {path}: {status.decode()}")
        async for event in sse_events(reader):
            self._event(watch, event)
        if not watch.terminal and not self.closing:
            raise StreamError("closed before its terminal event")

    def _submitted(self, watch: Watch, head: bytes, status: bytes) -> None:
        """A submission answered with its stream: its time to the head, and its job."""
        self.submit_ms.append((now_us() - watch.requested_us) / 1000)
        if status != b"200":
            return
        self.accepted += 1
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-tokenrelay-job-id":
                watch.job_id = value.strip().decode()

    def _event(self, watch: Watch, event: bytes) -> None:
        kind, data = sse_fields(event)
        if not data:
            return  # a heartbeat or the retry hint
        at = now_us()
        if kind == b"token" and watch.group != FRESH_BATCH:
            fields = orjson.loads(data)
            self.latencies_us.append(at - fields["ts"])
            self.arrivals_us.append(at)
            self.tokens += 1
            watch.tokens += 1
            if not watch.first_token_us:
                watch.first_token_us = at
                self.first_token_us = min(self.first_token_us or at, at)
            self.last_token_us = at
        elif kind == b"started":
            self.queue_wait_ms[watch.group].append(orjson.loads(data)["queue_wait_ms"])
        elif kind in TERMINAL:
            watch.terminal, watch.ended_us = True, at
            if self.freshness:
                self.fresh.append(asyncio.create_task(self._fresh(watch.job_id, at)))
                self.unrecorded[watch.job_id] = at
                if self.recorder is None:
                    self.recorder = asyncio.create_task(self._rows())
        if not watch.opened.done():
            watch.first_event_us = at
            watch.opened.set_result(None)

    # --- freshness: how long after its stream ended a job reads final, and is counted ---

    async def _fresh(self, job_id: str, ended_us: int) -> None:
        """The job's state (``GET /v1/jobs/{id}``) asked for from the moment its terminal
        event arrived here (its analytics row is awaited meanwhile, on its own: ``_rows``)."""

        def final(state: dict[str, Any]) -> bool:
            return state.get("status") in FINAL

        await self._trail(
            f"/v1/jobs/{job_id}", final, ended_us, self.state_lag_ms, "a state not final in time"
        )

    async def _batch_trail(
        self, batch_id: str, tasks: list[asyncio.Task[None]], watches: list[Watch]
    ) -> None:
        """``GET /v1/batches/{id}`` from the moment the batch's last stream ended until it
        counts every job final."""
        await asyncio.wait(tasks)
        if not all(w.terminal for w in watches):
            return  # counted among the errors already
        total = len(watches)

        def whole(answer: dict[str, Any]) -> bool:
            counts = answer.get("counts", {})
            return sum(counts.get(s, 0) for s in FINAL) == total

        await self._trail(
            f"/v1/batches/{batch_id}",
            whole,
            max(w.ended_us for w in watches),
            self.batch_lag_ms,
            "batch progress not caught up in time",
        )

    async def _queues_trail(self, last_ended_us: int) -> None:
        """``GET /v1/queues`` from the moment the last stream ended until nothing reads
        queued or running."""

        def empty(answer: dict[str, Any]) -> bool:
            return not any(q["queued"] or q["running"] for q in answer.get("queues", []))

        await self._trail(
            "/v1/queues", empty, last_ended_us, self.queues_lag_ms, "queues not caught up in time"
        )

    async def _trail(
        self,
        path: str,
        caught_up: Callable[[dict[str, Any]], bool],
        since_us: int,
        lags_ms: list[float],
        late: str,
    ) -> None:
        """``GET path`` every ``FRESH_POLL_S`` until ``caught_up`` says yes to its answer: the
        time since ``since_us`` goes to ``lags_ms``; past ``FRESH_GIVE_UP_S``, ``late`` counts
        among the errors."""
        give_up = since_us + int(FRESH_GIVE_UP_S * 1e6)
        try:
            while True:
                status, answer = await self.pool.get(path)
                if status == 200 and caught_up(answer):
                    lags_ms.append((now_us() - since_us) / 1000)
                    return
                if now_us() > give_up:
                    self.errors[late] += 1
                    return
                await asyncio.sleep(FRESH_POLL_S)
        except HttpError as exc:
            self.errors[str(exc)[:120]] += 1

    async def _rows(self) -> None:
        """Every ``ROWS_POLL_S``, one query for the ``jobs`` rows of every job still awaited
        (one query, not one per job: the sink shares its process with the query)."""
        while self.unrecorded:
            await asyncio.sleep(ROWS_POLL_S)
            ids = ", ".join(f"'{j}'" for j in self.unrecorded)
            sql = {"sql": f"SELECT DISTINCT job_id FROM jobs WHERE job_id IN ({ids})"}
            try:
                status, answer, _ = await self.pool.post("/v1/analytics/sql", sql)
            except HttpError as exc:
                self.errors[str(exc)[:120]] += 1
                continue
            at = now_us()
            for (job_id,) in answer.get("rows", []) if status == 200 else []:  # type: ignore[union-attr]
                ended_us = self.unrecorded.pop(job_id, None)
                if ended_us is not None:
                    self.analytics_lag_ms.append((at - ended_us) / 1000)
            for job_id, ended_us in list(self.unrecorded.items()):
                if at - ended_us > FRESH_GIVE_UP_S * 1e6:
                    self.errors["an analytics row not in time"] += 1
                    del self.unrecorded[job_id]
        self.recorder = None

    # --- what the parent reads ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "accepted": self.accepted,
            "ended": sum(w.terminal for w in self.watches),
            "errors": sum(self.errors.values()),
        }

    def result(self) -> dict[str, Any]:
        return {
            "began_us": self.began_us,
            "ended_us": self.ended_us,
            "first_token_us": self.first_token_us,
            "last_token_us": self.last_token_us,
            "tokens": self.tokens,
            "accepted": self.accepted,
            "jobs": len(self.watches),
            "ended": sum(w.terminal for w in self.watches),
            "idle_open": sum(w.opened.done() for w in self.idle),
            "latencies_us": self.latencies_us.tobytes(),
            "arrivals_us": self.arrivals_us.tobytes(),
            "all_open_us": max((w.first_token_us for w in self.watches), default=0),
            "first_token_ms": [
                (w.first_token_us - w.submit_us) / 1000 for w in self.watches if w.first_token_us
            ],
            "submit_ms": self.submit_ms,
            "stream_open_ms": [
                (w.first_event_us - w.requested_us) / 1000 for w in self.watches if w.first_event_us
            ],
            "queue_wait_ms": dict(self.queue_wait_ms),
            "state_lag_ms": self.state_lag_ms,
            "analytics_lag_ms": self.analytics_lag_ms,
            "batch_lag_ms": self.batch_lag_ms,
            "queues_lag_ms": self.queues_lag_ms,
            "errors": dict(self.errors),
        }

    def close(self) -> None:
        self.closing = True
        for writer in self.writers:
            writer.close()
        self.pool.close()


def run(conn: Connection) -> None:
    """The process: serve ``start``, ``stats``, ``result`` and ``close``, one load at a time."""
    use_uvloop()

    async def main() -> None:
        state: dict[str, Any] = {}

        async def start(spec: dict[str, Any]) -> None:
            state["load"] = load = Load(spec)
            state["task"] = asyncio.create_task(load.run())

        async def stats() -> dict[str, Any]:
            return {**state["load"].stats(), "done": state["task"].done()}

        async def result(timeout: float) -> dict[str, Any]:
            await asyncio.wait_for(asyncio.shield(state["task"]), timeout)
            return dict(state["load"].result())

        async def close() -> None:
            if "load" in state:
                state["load"].close()
                state["task"].cancel()
                await asyncio.wait([state["task"]], timeout=10)

        await serve_commands(
            conn, {"start": start, "stats": stats, "result": result, "close": close}
        )

    asyncio.run(main())
