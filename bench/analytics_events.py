"""The analytics sink benchmark's input: synthetic lifecycle events of finished jobs, produced to
fresh tokens topics with our ``Producer``.

Each job is a ``queued``, a ``started`` and a ``completed`` (usage, cost at the shipped prices,
ttft, itl_ms, duration, a content of ~4 characters per completion token), optionally with
``token`` events between. The jobs run in windows of ``WINDOW`` (all queued, then started,
tokens, completed), so their events interleave as a busy worker pool's do. Events are built as
dicts (the models' JSON; each kind is checked once against ``schemas.events``) because a
pydantic round trip per event would make producing slower than the sink being measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from bench.analytics_common import console
from schemas.events import parse_event
from services.core.ids import new_job_id
from services.core.kafka import Admin, Consumer, Delivered, Producer, TopicSpec
from services.core.prices import Prices, load_prices

WINDOW = 1_000
TENANTS = [f"tenant-{i:02d}" for i in range(10)]
MODELS = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-5-mini", "gpt-4.1", "o3-mini"]
PRIORITIES = ["urgent", "high", "normal", "normal", "normal", "low"]
PRODUCER_CONFIG = {"linger.ms": 50, "queue.buffering.max.messages": 1_000_000}
PRODUCER = "services.core.kafka.Producer (acks=all, idempotent, lz4, linger.ms=50)"
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. " * 200)[:8000]


@dataclass
class Dataset:
    """One tokens topic and what was produced to it."""

    name: str
    topic: str
    jobs: int
    tokens_per_job: int
    records: int = 0
    cost_usd: Decimal = Decimal(0)
    produce_s: float = 0.0
    ends: dict[int, int] = field(default_factory=dict)

    @property
    def event_rows(self) -> int:
        return 3 * self.jobs

    @property
    def rows(self) -> int:
        return self.event_rows + self.jobs


def job_events(
    i: int, tokens: int, ts: int, prices: Prices
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The events of job ``i`` as (phase, event): 0 queued, 1 started, 2 tokens, 3 completed."""
    job_id = new_job_id(ts // 1000)
    tenant, model = TENANTS[i % 10 if i % 3 else 0], MODELS[(i * 7) % 6]
    prompt, completion = 30 + (i * 37) % 3000, 5 + (i * 53) % 600
    base = {"schema": "tokenrelay.JobEvent/1", "job_id": job_id, "tenant": tenant}
    run = {**base, "attempt": 1, "worker_id": f"worker-{i % 8}"}
    yield (
        0,
        {
            **base,
            "type": "queued",
            "attempt": 0,
            "seq": 0,
            "ts": ts,
            "worker_id": "ingest-1",
            "priority": PRIORITIES[i % 6],
            "model": model,
            "provider": "openai",
            "batch_id": f"batch-{i // 5000}" if i % 10 == 0 else None,
            "estimated_cost_usd": prices.cost_usd(model, prompt, 1024),
        },
    )
    wait = 5.0 + i % 900
    yield (
        1,
        {
            **run,
            "type": "started",
            "seq": 0,
            "ts": ts + int(wait * 1000),
            "model": model,
            "provider": "openai",
            "queue_wait_ms": wait,
        },
    )
    for k in range(1, tokens + 1):
        yield (
            2,
            {**run, "type": "token", "seq": k, "ts": ts + k * 20_000, "text": " tok", "index": k},
        )
    ttft, itl = 150.0 + i % 2000, 8.0 + i % 50
    duration = ttft + completion * itl
    yield (
        3,
        {
            **run,
            "type": "completed",
            "seq": tokens + 1,
            "ts": ts + int(duration * 1000),
            "content": LOREM[: 4 * completion],
            "parsed": None,
            "finish_reason": "stop",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            "cost_usd": prices.cost_usd(model, prompt, completion),
            "ttft_ms": ttft,
            "itl_ms": {"p50": itl, "p90": itl * 1.7, "p99": itl * 3.5},
            "duration_ms": duration,
            "tokens_per_s": completion / (duration / 1000),
            "tokens": completion,
        },
    )


def check_schema(prices: Prices) -> None:
    """Every kind of event the bench produces is a valid ``JobEvent``."""
    for _, event in job_events(1, 2, 1_700_000_000_000_000, prices):
        parse_event(event)


class Loader:
    """Produces a dataset's jobs window by window and counts deliveries."""

    def __init__(self, producer: Producer, prices: Prices) -> None:
        self.producer, self.prices = producer, prices
        self.delivered, self.errors = 0, list[str]()

    def _on_delivery(self, fut: asyncio.Future[Delivered]) -> None:
        if fut.exception() is not None:
            self.errors.append(str(fut.exception()))
        else:
            self.delivered += 1

    async def load(self, ds: Dataset, progress_s: float) -> None:
        t0 = last = time.perf_counter()
        ts0 = int(time.time() * 1_000_000) - ds.jobs * 10_000
        for start in range(0, ds.jobs, WINDOW):
            window = [
                list(job_events(i, ds.tokens_per_job, ts0 + i * 10_000, self.prices))
                for i in range(start, min(ds.jobs, start + WINDOW))
            ]
            for phase in range(4):
                for events in window:
                    for ph, event in events:
                        if ph == phase:
                            await self._send(ds, event)
            if time.perf_counter() - last >= progress_s:
                last = time.perf_counter()
                console.print(
                    f"  {last - t0:5.1f}s produced {ds.records:>9,} records"
                    f" ({ds.records / (last - t0):,.0f}/s), delivered {self.delivered:,}"
                )
        await self.producer.flush(300)
        ds.produce_s = time.perf_counter() - t0
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} records not delivered: {self.errors[:3]}")

    async def _send(self, ds: Dataset, event: dict[str, Any]) -> None:
        fut = await self.producer.produce(ds.topic, event["job_id"], orjson.dumps(event))
        fut.add_done_callback(self._on_delivery)
        ds.records += 1
        if event["type"] == "completed":
            ds.cost_usd += Decimal(repr(event["cost_usd"]))


async def prepare(
    bootstrap: str,
    prefix: str,
    jobs: int,
    token_jobs: int,
    tokens_per_job: int,
    partitions: int,
    progress_s: float,
) -> list[Dataset]:
    """Create the topics and produce every dataset; their end offsets."""
    prices = load_prices()
    check_schema(prices)
    sets = [Dataset("lifecycle only", f"{prefix}.lifecycle", jobs, 0)]
    if token_jobs:
        sets.append(
            Dataset(
                f"+{tokens_per_job} token events/job",
                f"{prefix}-tok.lifecycle",
                token_jobs,
                tokens_per_job,
            )
        )
    specs = [TopicSpec(ds.topic, partitions) for ds in sets]
    specs += [TopicSpec(f"{p}.jobs.dlq", 1) for p in (prefix, f"{prefix}-tok")]
    await Admin(bootstrap).ensure_topics(specs)
    async with Producer(bootstrap, **PRODUCER_CONFIG) as producer:
        loader = Loader(producer, prices)
        for ds in sets:
            console.print(f"producing {ds.name}: {ds.jobs:,} jobs to {ds.topic}")
            await loader.load(ds, progress_s)
            console.print(
                f"  {ds.records:,} records in {ds.produce_s:.1f}s"
                f" ({ds.records / ds.produce_s:,.0f}/s); {ds.rows:,} rows to come"
            )
    async with Consumer(bootstrap, f"{prefix}-bench-look") as look:
        for ds in sets:
            for p in range(partitions):
                ds.ends[p] = (await look.watermarks(ds.topic, p))[1]
            assert sum(ds.ends.values()) == ds.records, (ds.ends, ds.records)
    return sets
