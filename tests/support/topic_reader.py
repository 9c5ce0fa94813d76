"""Read a whole topic as a read-committed consumer would, polling until a condition holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from schemas.dead_letter import DeadLetter
from schemas.events import JobEvent
from services.core.kafka import Consumer, Record
from services.core.serde import decode, decode_event

T = TypeVar("T")


class TopicReader(Generic[T]):
    """Every committed record of ``topic`` from its start, decoded by ``decode``."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, decode: Callable[[bytes | None], T]
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.decode = decode
        self.items: list[tuple[Record, T]] = []
        self._consumer = Consumer(bootstrap, f"test-reader-{uuid.uuid4().hex}")

    async def __aenter__(self) -> TopicReader[T]:
        await self._consumer.start()
        await self._consumer.assign([(self.topic, p, 0) for p in range(self.partitions)])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.close()

    async def until(
        self, done: Callable[[list[T]], bool], timeout: float = 60.0, what: str = "condition"
    ) -> list[T]:
        """Poll until ``done(values so far)``; fail with what was seen after ``timeout``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            for rec in await self._consumer.poll(500, 0.1):
                self.items.append((rec, self.decode(rec.value)))
            values = [v for _, v in self.items]
            if done(values):
                return values
            if loop.time() > give_up:
                raise TimeoutError(f"{what} not reached in {timeout}s; saw {len(values)} records")

    async def drain(self) -> list[tuple[Record, T]]:
        """Poll until a poll brings nothing new: what the topic held (for diagnostics)."""
        seen = -1
        while seen != len(self.items):
            seen = len(self.items)
            await self.until(lambda _: True)
        return self.items


def dlq_reader(bootstrap: str, topic: str, partitions: int) -> TopicReader[DeadLetter]:
    return TopicReader(bootstrap, topic, partitions, lambda raw: decode(DeadLetter, raw))


def events_reader(bootstrap: str, topic: str, partitions: int) -> TopicReader[JobEvent]:
    return TopicReader(bootstrap, topic, partitions, decode_event)


def of_type(events: list[JobEvent], *types: str) -> list[JobEvent]:
    return [e for e in events if e.type in types]


def by_job(events: list[JobEvent], job_id: str) -> list[JobEvent]:
    return [e for e in events if e.job_id == job_id]
