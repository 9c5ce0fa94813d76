"""A synthetic worker: the events a worker would publish, at a set pace, without running a model.

Runs in its own process (``Remote(…, run, bootstrap, topic)``) and publishes with our
``Producer`` to the tokens topic, key = job id, as a worker does: ``queued`` (what the
ingest writes; attempt 0), then per job ``started``, ``tokens`` token events and
``completed``. Each event's ``ts`` is taken just before it is handed to the producer.

The token events of all jobs follow one global schedule: the ``i``-th token event
overall is for job ``i % jobs`` and is due ``i / (jobs * rate)`` seconds after the
start, so every job streams at ``rate`` tokens/s and the jobs' tokens interleave
evenly instead of arriving in bursts. A job's ``completed`` follows its last token.
Token events are built as dicts (the models' JSON, checked once against
``schemas.events``) because a pydantic round trip per token would cost this
process more CPU than the producer.
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.processes import serve_commands, use_uvloop
from schemas.events import Completed, Queued, Started, Usage, parse_event
from schemas.jobs import Priority
from services.core.ids import now_us
from services.core.kafka import Delivered, Producer
from services.core.serde import encode

TENANT, WORKER_ID, MODEL, TEXT = "bench", "bench-synthetic-worker", "fake-1", " tok"
PRODUCER = "services.core.kafka.Producer (confluent-kafka, acks=all, idempotent, linger.ms=2)"
TICK_S = 0.001


def queued(job_id: str) -> bytes:
    return encode(
        Queued(
            job_id=job_id,
            attempt=0,
            seq=0,
            ts=now_us(),
            worker_id="bench-ingest",
            tenant=TENANT,
            priority=Priority.NORMAL,
            model=MODEL,
            provider="fake",
        )
    )


def started(job_id: str) -> bytes:
    return encode(
        Started(
            job_id=job_id,
            attempt=1,
            seq=0,
            ts=now_us(),
            worker_id=WORKER_ID,
            tenant=TENANT,
            model=MODEL,
            provider="fake",
            queue_wait_ms=1.0,
        )
    )


def token(job_id: str, index: int) -> bytes:
    return orjson.dumps(
        {
            "schema": "tokenrelay.JobEvent/1",
            "type": "token",
            "job_id": job_id,
            "attempt": 1,
            "seq": index,
            "ts": now_us(),
            "worker_id": WORKER_ID,
            "tenant": TENANT,
            "text": TEXT,
            "index": index,
        }
    )


def completed(job_id: str, tokens: int, rate: float) -> bytes:
    return encode(
        Completed(
            job_id=job_id,
            attempt=1,
            seq=tokens + 1,
            ts=now_us(),
            worker_id=WORKER_ID,
            tenant=TENANT,
            content=TEXT * tokens,
            finish_reason="length",
            usage=Usage(prompt_tokens=1, completion_tokens=tokens),
            cost_usd=0.0,
            ttft_ms=1000 / rate,
            duration_ms=1000 * tokens / rate,
            tokens_per_s=rate,
            tokens=tokens,
        )
    )


class SyntheticWorker:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(bootstrap, **{"client.id": WORKER_ID})
        self.sent = 0
        self.delivered = 0
        self.errors: list[str] = []
        self.behind_max_s = 0.0
        self.seconds = 0.0
        self._run: asyncio.Task[None] | None = None

    def _on_delivery(self, fut: asyncio.Future[Delivered]) -> None:
        if fut.exception() is not None:
            self.errors.append(str(fut.exception()))
        else:
            self.delivered += 1

    async def _send(self, job_id: str, value: bytes) -> None:
        fut = await self.producer.produce(self.topic, job_id, value)
        fut.add_done_callback(self._on_delivery)
        self.sent += 1

    async def submit(self, idle: list[str], active: list[str]) -> int:
        """``queued`` for every job, ``started`` for the active ones; once Kafka confirmed all."""
        self.producer.start()
        parse_event(token("00000000-0000-7000-8000-000000000000", 1))  # the dict is a Token
        for job_id in idle + active:
            await self._send(job_id, queued(job_id))
        for job_id in active:
            await self._send(job_id, started(job_id))
        await self.producer.flush()
        return self.sent

    async def start(self, active: list[str], tokens: int, rate: float) -> None:
        self._run = asyncio.create_task(self._stream(active, tokens, rate))

    async def _stream(self, active: list[str], tokens: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        jobs, total = len(active), len(active) * tokens
        begin, done = loop.time(), 0
        while done < total:
            elapsed = loop.time() - begin
            due = min(total, int(elapsed * jobs * rate) + 1)
            self.behind_max_s = max(self.behind_max_s, elapsed - done / (jobs * rate))
            for i in range(done, due):
                job_id, index = active[i % jobs], i // jobs + 1
                await self._send(job_id, token(job_id, index))
                if index == tokens:
                    await self._send(job_id, completed(job_id, tokens, rate))
            done = due
            await asyncio.sleep(TICK_S)
        self.seconds = loop.time() - begin
        await self.producer.flush()

    async def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "errors": self.errors[:5],
            "error_count": len(self.errors),
            "behind_max_ms": round(self.behind_max_s * 1000, 1),
            "seconds": round(self.seconds, 2),
            "done": self._run is not None and self._run.done(),
        }

    async def wait(self) -> dict[str, Any]:
        assert self._run is not None
        await self._run
        return await self.stats()

    async def close(self) -> None:
        if self._run is not None and not self._run.done():
            self._run.cancel()
        await self.producer.close()


def run(conn: Connection, bootstrap: str, topic: str) -> None:
    """The process: serve ``submit``, ``start``, ``stats``, ``wait`` and ``close``."""
    use_uvloop()

    async def main() -> None:
        worker = SyntheticWorker(bootstrap, topic)
        await serve_commands(
            conn,
            {
                "submit": worker.submit,
                "start": worker.start,
                "stats": worker.stats,
                "wait": worker.wait,
                "close": worker.close,
            },
        )

    asyncio.run(main())
