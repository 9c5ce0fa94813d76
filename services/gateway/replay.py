"""Reads of a job's past events, on a small pool of consumers apart from the live fan-out.

A stream that starts before the fan-out's position reads the gap itself: the
job's records in ``[start, end)`` of its partition, read to the end of the range
into memory (a job's events, not the partition's), then the reader goes back to
the pool. So a slow client never holds a reader, and a burst of late joiners
waits for a reader instead of opening a consumer each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.core.errors import KafkaError
from services.core.job_log import Located, locate, reader
from services.core.kafka import Consumer, KafkaClients, Record
from services.core.metrics import STREAM_REPLAY_READS
from services.gateway.stream_item import StreamItem, item_of

log = logging.getLogger(__name__)

READ_DEADLINE_S = 30.0
FETCH_WAIT_MS = 10
"""How long the broker may hold a replay reader's fetch for more data. A reader
never waits for new records, and its next assignment's first fetch queues
behind a held one: the default 500 ms would delay every replay by that much."""


class ReplayTimeoutError(KafkaError):
    """A replay did not reach the end of its range in time (the broker is slow or away)."""


class ReplayReaders:
    def __init__(self, clients: KafkaClients, topic: str, size: int) -> None:
        self.topic = topic
        self._clients = clients
        self._size = size
        self._idle: list[Consumer] = []
        self._made = 0
        self._free = asyncio.Semaphore(size)

    @asynccontextmanager
    async def _borrow(self) -> AsyncIterator[Consumer]:
        async with self._free:
            if self._idle:
                consumer = self._idle.pop()
            else:
                self._made += 1
                consumer = reader(
                    self._clients, f"replay-{self._made}", **{"fetch.wait.max.ms": FETCH_WAIT_MS}
                )
                await consumer.start()
            try:
                yield consumer
                await consumer.assign([])  # stop fetching while idle
            except BaseException:
                await consumer.close()  # its position is unknown: do not lend it again
                raise
            self._idle.append(consumer)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.close() for c in idle))

    async def locate(self, partitions: int, job_id: str) -> Located | None:
        """The job's first event, by a bounded seek (see ``core.job_log``)."""
        async with self._borrow() as consumer:
            return await locate(consumer, self.topic, partitions, job_id)

    async def event_at(self, partition: int, offset: int, key: bytes) -> StreamItem | None:
        """The job's event at ``offset``; None if the record there is not one of the job's."""
        async with self._borrow() as consumer:
            low, high = await consumer.watermarks(self.topic, partition)
            if not low <= offset < high:
                return None
            await consumer.assign([(self.topic, partition, offset)])
            for rec in await self._read(consumer, partition, offset, offset + 1):
                if rec.offset == offset and rec.key == key and rec.value is not None:
                    return item_of(rec)
        return None

    async def read(self, partition: int, start: int, end: int, key: bytes) -> list[StreamItem]:
        """The job's events in ``[start, end)`` of ``partition``, in order."""
        STREAM_REPLAY_READS.inc()
        async with self._borrow() as consumer:
            await consumer.assign([(self.topic, partition, start)])
            records = await self._read(consumer, partition, start, end, key)
        items = []
        for rec in records:
            item = item_of(rec)
            if item is not None:
                items.append(item)
        return items

    async def _read(
        self, consumer: Consumer, partition: int, start: int, end: int, key: bytes | None = None
    ) -> list[Record]:
        """Records in ``[start, end)`` (of the job ``key`` if given), read until ``end``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READ_DEADLINE_S
        out: list[Record] = []
        while True:
            reached = False
            for rec in await consumer.poll(1000, 0.1):
                if rec.partition != partition or rec.offset < start:
                    continue  # left over from the reader's previous assignment
                if rec.offset >= end:
                    reached = True
                    break
                if key is None or rec.key == key:
                    out.append(rec)
                reached = rec.offset >= end - 1
            if reached or await consumer.position(self.topic, partition) >= end:
                return out
            if loop.time() > give_up:
                raise ReplayTimeoutError(
                    f"replay of {self.topic}[{partition}] did not reach {end} in time"
                )
