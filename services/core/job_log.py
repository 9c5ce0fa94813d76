"""Find a job's records on its topics without scanning a partition.

The job's partition follows from its id (murmur2, as every producer uses), and
its first event from the time in its UUIDv7 id (``offsets_for_times``): a
bounded seek. ``locate`` works on any group-less consumer, so the gateway can
use its pooled replay readers; ``find_job`` makes a short-lived one.
``find_command`` finds a job's command on its priority's topic the same way,
from the time it was queued (an admin retry runs it again).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from schemas.commands import JobCommand
from schemas.events import JobEvent
from services.core.errors import ApiError, DecodeError
from services.core.ids import job_id_ms
from services.core.kafka import Admin, Consumer, KafkaClients
from services.core.partitioner import partition_for
from services.core.serde import decode, decode_event

log = logging.getLogger(__name__)

SEEK_MARGIN_MS = 1000
"""How far before the id's time the first-event seek starts, for clock differences."""


@dataclass(frozen=True, slots=True)
class Located:
    partition: int
    first: JobEvent
    first_offset: int
    headers: list[tuple[str, bytes]] | None = None


async def locate(
    consumer: Consumer, topic: str, partitions: int, job_id: str, deadline_s: float = 10.0
) -> Located | None:
    """The job's first event, or None if the job is not on its partition.

    The job's ``queued`` event was confirmed before anyone learned its id, so it
    lies below the high watermark taken now: reading up to there settles it.
    """
    ms = job_id_ms(job_id)
    if ms is None:
        return None
    key = job_id.encode()
    partition = partition_for(job_id, partitions)
    start = await consumer.offset_for_time(topic, partition, ms - SEEK_MARGIN_MS)
    if start is None:
        return None
    _, high = await consumer.watermarks(topic, partition)
    await consumer.assign([(topic, partition, start)])
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while loop.time() < give_up:
        for rec in await consumer.poll(500, 0.2):
            if rec.key == key and rec.value is not None and rec.partition == partition:
                return Located(partition, decode_event(rec.value), rec.offset, rec.headers)
        if await consumer.position(topic, partition) >= high:
            return None
    return None


class TopicPartitions:
    """Partition counts of topics, looked up once (they only grow, and ours never do).

    Concurrent first lookups share one metadata request: a burst of requests
    right after start would otherwise each ask the cluster for every topic.
    """

    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._known: dict[str, int] = {}
        self._lookup: asyncio.Task[dict[str, int]] | None = None

    async def count(self, topic: str) -> int:
        if topic not in self._known:
            if self._lookup is None or self._lookup.done():
                self._lookup = asyncio.ensure_future(self._admin.topics())
            found = (await asyncio.shield(self._lookup)).get(topic)
            if found is None:
                raise ApiError(503, "not_ready", f"topic {topic} does not exist yet")
            self._known[topic] = found
        return self._known[topic]


def reader(clients: KafkaClients, purpose: str, **overrides: Any) -> Consumer:
    """A group-less consumer for reading positions it is assigned (it never commits)."""
    return clients.consumer(
        f"tokenrelay-reader-{purpose}",
        **{"enable.partition.eof": False, **overrides},
    )


async def find_job(
    clients: KafkaClients, topic: str, partitions: int, job_id: str
) -> Located | None:
    """The job's first event (which names its tenant), or None if there is no such job."""
    async with reader(clients, job_id) as consumer:
        return await locate(consumer, topic, partitions, job_id)


SCAN_WINDOW_MS = 120_000
"""A command is produced within the submit bound (``submit_timeout_s`` ≤ 60 s) of its
``queued`` event; twice that past it, the search for it stops."""
SEARCH_TIMEOUT_S = 10.0


async def find_command(
    clients: KafkaClients, topic: str, partitions: int, job_id: str, queued_at_us: int
) -> JobCommand | None:
    """The job's command on ``topic``, searched from the time it was queued; None if gone."""
    partition = partition_for(job_id, partitions)
    key = job_id.encode()
    since_ms = queued_at_us // 1000 - SEEK_MARGIN_MS
    until_ms = queued_at_us // 1000 + SCAN_WINDOW_MS
    async with reader(clients, f"retry-{job_id}") as consumer:
        start = await consumer.offset_for_time(topic, partition, since_ms)
        if start is None:
            return None
        _, high = await consumer.watermarks(topic, partition)
        await consumer.assign([(topic, partition, start)])
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SEARCH_TIMEOUT_S
        while loop.time() < give_up:
            for rec in await consumer.poll(500, 0.2):
                if rec.key == key:
                    try:
                        command = decode(JobCommand, rec.value)
                    except DecodeError as exc:
                        log.warning("undecodable command at %s: %s", rec.where(), exc)
                    else:
                        return command
                if rec.timestamp_ms > until_ms or rec.offset + 1 >= high:
                    return None
            if await consumer.position(topic, partition) >= high:
                return None
    raise ApiError(503, "kafka_unavailable", "the job's command could not be read in time; retry")
