"""Every worker follows ``tokenrelay.jobs.control`` from its start, outside the group.

The topic is small (one record per instruction), so each worker reads all of it
at startup and then live: a job cancelled while queued is known to whichever
worker dequeues it later, and a running job's stream is closed by the worker
that runs it within one poll (~100 ms). The worker is not ready until it has
read the topic up to the end it found at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from schemas.control import Cancel
from services.core.errors import DecodeError, KafkaError
from services.core.kafka import Consumer
from services.core.serde import decode

log = logging.getLogger(__name__)

REMEMBERED = 200_000
"""Cancellations kept in memory (oldest forgotten first)."""


class CancelRegistry:
    def __init__(self) -> None:
        self._cancels: OrderedDict[str, Cancel] = OrderedDict()
        self._waiters: dict[str, asyncio.Event] = {}

    def add(self, cancel: Cancel) -> None:
        self._cancels[cancel.job_id] = cancel
        self._cancels.move_to_end(cancel.job_id)
        while len(self._cancels) > REMEMBERED:
            self._cancels.popitem(last=False)
        event = self._waiters.get(cancel.job_id)
        if event is not None:
            event.set()

    def __len__(self) -> int:
        return len(self._cancels)

    def get(self, job_id: str) -> Cancel | None:
        return self._cancels.get(job_id)

    def watch(self, job_id: str) -> asyncio.Event:
        """An event set when the job is cancelled (already set if it was)."""
        event = self._waiters.setdefault(job_id, asyncio.Event())
        if job_id in self._cancels:
            event.set()
        return event

    def unwatch(self, job_id: str) -> None:
        self._waiters.pop(job_id, None)


class ControlListener:
    def __init__(self, bootstrap: str, topic: str, registry: CancelRegistry, name: str) -> None:
        self.topic = topic
        self.registry = registry
        self.caught_up = asyncio.Event()
        self._consumer = Consumer(bootstrap, f"tokenrelay-control-{name}")
        self._task: asyncio.Task[None] | None = None

    async def start(self, partitions: int) -> None:
        await self._consumer.start()
        ends = {}
        for p in range(partitions):
            low, high = await self._consumer.watermarks(self.topic, p)
            ends[p] = high
            log.debug("control %s[%d] from %d to %d", self.topic, p, low, high)
        await self._consumer.assign([(self.topic, p, 0) for p in range(partitions)])
        self._task = asyncio.create_task(self._follow(ends), name="control")

    async def _follow(self, ends: dict[int, int]) -> None:
        behind = {p for p, end in ends.items() if end > 0}
        if not behind:
            self.caught_up.set()
        while True:
            try:
                records = await self._consumer.poll(500, 0.1)
            except KafkaError as exc:
                log.warning("control topic: %s", exc)
                continue
            for rec in records:
                if rec.offset + 1 >= ends.get(rec.partition, 0):
                    behind.discard(rec.partition)
                try:
                    cancel = decode(Cancel, rec.value)
                except DecodeError as exc:
                    log.error("undecodable control record at %s: %s", rec.where(), exc)
                    continue
                self.registry.add(cancel)
                if self.caught_up.is_set():
                    log.info("job %s cancel received by=%s", cancel.job_id, cancel.by)
            if not behind and not self.caught_up.is_set():
                log.info("control topic read: %d cancellations known", len(self.registry))
                self.caught_up.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.close()
