"""Read one job's events from ``tokenrelay.tokens``, from its first event or after a cursor.

The job's partition follows from its id (murmur2, as every producer uses), and
its first event from the time in its UUIDv7 id (``offsets_for_times``): a
bounded seek, no scan of the partition from its start. Each reader is a
short-lived consumer outside any group; it ends after the job's terminal
event and drops duplicates by ``(attempt, seq)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from schemas.events import TERMINAL_EVENT_TYPES, JobEvent
from services.core.errors import ApiError, DecodeError
from services.core.ids import job_id_ms
from services.core.kafka import Admin, Consumer, Record
from services.core.partitioner import partition_for
from services.core.serde import decode_event

log = logging.getLogger(__name__)

SEEK_MARGIN_MS = 1000
"""How far before the id's time the first-event seek starts, for clock differences."""


@dataclass(frozen=True, slots=True)
class Located:
    partition: int
    start_offset: int
    first: JobEvent
    first_offset: int
    first_raw: bytes


class JobEventReader:
    def __init__(self, bootstrap: str, topic: str, partitions: int, job_id: str) -> None:
        self.topic = topic
        self.job_id = job_id
        self.key = job_id.encode()
        self.partition = partition_for(job_id, partitions)
        self._pending: list[Record] = []
        self._consumer = Consumer(
            bootstrap, f"tokenrelay-reader-{job_id}", **{"enable.partition.eof": False}
        )

    async def __aenter__(self) -> JobEventReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.close()

    async def locate(self, deadline_s: float = 10.0) -> Located | None:
        """The job's first event, or None if the job is not on its partition.

        The job's ``queued`` event was confirmed before anyone learned its id, so it
        lies below the high watermark taken now: reading up to there settles it.
        """
        ms = job_id_ms(self.job_id)
        if ms is None:
            return None
        start = await self._consumer.offset_for_time(
            self.topic, self.partition, ms - SEEK_MARGIN_MS
        )
        if start is None:
            return None
        _, high = await self._consumer.watermarks(self.topic, self.partition)
        await self._consumer.assign([(self.topic, self.partition, start)])
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s
        while loop.time() < give_up:
            batch = await self._consumer.poll(500, 0.2)
            for i, rec in enumerate(batch):
                if rec.key == self.key and rec.value is not None:
                    self._pending = batch[i + 1 :]
                    return Located(
                        self.partition, start, decode_event(rec.value), rec.offset, rec.value
                    )
            if await self._consumer.position(self.topic, self.partition) >= high:
                return None
        return None

    async def events(
        self, located: Located, after: int | None
    ) -> AsyncIterator[tuple[int, JobEvent, bytes]]:
        """(offset, event, raw JSON) of the job from its first event, or after offset ``after``."""
        seen: set[tuple[int, int]] = set()
        if after is None or after < located.first_offset:
            first = located.first
            seen.add((first.attempt, first.seq))
            yield located.first_offset, first, located.first_raw
            if first.type in TERMINAL_EVENT_TYPES:
                return
        while True:
            batch, self._pending = self._pending or await self._consumer.poll(500, 0.25), []
            for rec in batch:
                if rec.key != self.key or rec.value is None or rec.offset <= located.first_offset:
                    continue
                try:
                    event = decode_event(rec.value)
                except DecodeError:
                    log.exception("undecodable event at %s for job %s", rec.where(), self.job_id)
                    continue
                ident = (event.attempt, event.seq)
                if ident in seen:
                    continue
                seen.add(ident)
                if after is None or rec.offset > after:
                    yield rec.offset, event, rec.value
                if event.type in TERMINAL_EVENT_TYPES:
                    return


class TopicPartitions:
    """Partition counts of topics, looked up once (they only grow, and ours never do)."""

    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._known: dict[str, int] = {}

    async def count(self, topic: str) -> int:
        if topic not in self._known:
            found = (await self._admin.topics()).get(topic)
            if found is None:
                raise ApiError(503, "not_ready", f"topic {topic} does not exist yet")
            self._known[topic] = found
        return self._known[topic]


async def find_job(bootstrap: str, topic: str, partitions: int, job_id: str) -> Located | None:
    """The job's first event (which names its tenant), or None if there is no such job."""
    async with JobEventReader(bootstrap, topic, partitions, job_id) as reader:
        return await reader.locate()
