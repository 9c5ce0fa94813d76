"""Jobs on an in-memory Kafka: settings, a worker, submissions, the events they produced.

For the fast tests of the worker's loop and the sink's; see ``memory_kafka``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from schemas.events import JobEvent
from schemas.jobs import JobRequest
from services.core.ids import new_job_id, now_us
from services.core.prices import load_prices
from services.core.serde import decode_event
from services.core.settings import Settings
from services.core.submission import new_submission, publish
from services.worker.providers.registry import make_providers
from services.worker.runner import WorkerRunner
from tests.support.memory_kafka import MemoryKafka

PARTITIONS = 2


def settings(worker_id: str = "w1", **overrides: Any) -> Settings:
    """Settings for a memory stack: two partitions a topic, retries at once."""
    return Settings(
        worker_id=worker_id,
        topic_partitions=PARTITIONS,
        retry_base_s=0.0,
        retry_max_s=0.0,
        **overrides,
    )


@asynccontextmanager
async def worker(kafka: MemoryKafka, worker_id: str = "w1") -> AsyncIterator[WorkerRunner]:
    s = settings(worker_id)
    runner = WorkerRunner(s, kafka.producer(), make_providers(s), clients=kafka)  # type: ignore[arg-type]
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def submit(kafka: MemoryKafka, n: int = 1, **request: Any) -> list[str]:
    s = settings()
    request.setdefault("provider_options", {"tokens_per_s": 0})
    subs = [
        new_submission(
            JobRequest(prompt="hi", **request),
            s,
            load_prices(None),
            job_id=new_job_id(),
            tenant="acme",
            now=now_us(),
        )
        for _ in range(n)
    ]
    await publish(kafka.producer(), s.topics, subs)  # type: ignore[arg-type]
    return [sub.job_id for sub in subs]


def events(kafka: MemoryKafka, job_id: str | None = None) -> list[JobEvent]:
    out = []
    for rec in kafka.records(settings().topics.tokens):
        if rec.value is not None and (job_id is None or rec.key == job_id.encode()):
            out.append(decode_event(rec.value))
    return out


def ended(kafka: MemoryKafka, job_ids: list[str]) -> Callable[[], dict[str, str]]:
    def check() -> dict[str, str]:
        last = {e.job_id: e.type for e in events(kafka) if e.type in TERMINAL}
        return last if all(j in last for j in job_ids) else {}

    return check


TERMINAL = {"completed", "failed", "cancelled"}


def lag(kafka: MemoryKafka) -> int:
    s = settings()
    total = 0
    for topic in [*s.topics.jobs_by_priority(), s.topics.retry]:
        for p, part in enumerate(kafka.create(topic)):
            done = kafka.committed(s.worker_group, (topic, p)).offset or 0
            total += len(part) - done
    return total
