"""How far a newly assigned aggregator must read before its reads are as new as its last run's.

An instance commits its offsets once a second, so when it dies it has usually
applied (and answered reads from) events past its last commit. A new instance
recovers the table as of that commit and replays the rest; until the replay has
passed what the old one had seen, it would answer a finished job as still
running. So readiness waits for the last record each assigned partition held
when the partitions were taken: ``targets`` finds it, ``caught_up`` compares.

The last record is not "end offset - 1": workers write in transactions, so a
partition usually ends with a commit marker, an offset no consumer is ever
given. It is found by reading (``read_committed``) the tail of each partition
backwards, a growing window at a time, until a window holds a record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from services.core.job_log import reader
from services.core.kafka import Consumer, KafkaClients

FIRST_WINDOW = 64
"""Records read back from the end at first; a tail of markers only is rare and short."""
DEADLINE_S = 30.0

log = logging.getLogger(__name__)


async def targets(
    clients: KafkaClients, topic: str, partitions: int, owned: Iterable[int]
) -> dict[int, int]:
    """Per owned partition, the offset of its last committed record now (none: empty)."""
    owned = sorted(set(owned))
    if not owned:
        return {}
    ends = await clients.admin().end_offsets(topic, partitions)
    log.info("last stable offsets of %s: %s", topic, {p: ends[p] for p in owned})
    found: dict[int, int] = {}
    async with reader(clients, "catch-up") as consumer:
        for p in owned:
            low, _ = await consumer.watermarks(topic, p)
            last = await _last_record(consumer, topic, p, low, ends[p])
            if last is not None:
                found[p] = last
    return found


async def _last_record(
    consumer: Consumer, topic: str, partition: int, low: int, end: int
) -> int | None:
    window = FIRST_WINDOW
    upper = end
    while upper > low:
        start = max(low, upper - window)
        last = await _last_between(consumer, topic, partition, start, upper)
        if last is not None:
            return last
        upper, window = start, window * 8
    return None


async def _last_between(
    consumer: Consumer, topic: str, partition: int, start: int, end: int
) -> int | None:
    """The last record's offset in [start, end), reading from ``start`` until ``end``."""
    await consumer.assign([(topic, partition, start)])
    loop = asyncio.get_running_loop()
    give_up = loop.time() + DEADLINE_S
    last: int | None = None
    while await consumer.position(topic, partition) < end:
        if loop.time() > give_up:
            raise TimeoutError(f"{topic}[{partition}] not read to {end} in {DEADLINE_S:.0f} s")
        for rec in await consumer.poll(500, 0.2):
            if rec.partition == partition and start <= rec.offset < end:
                last = rec.offset if last is None else max(last, rec.offset)
    return last


def caught_up(targets: Mapping[int, int], reached: Mapping[int, int]) -> bool:
    """Whether every partition's last record (``targets``) is applied or committed past."""
    return all(reached.get(p, -1) >= offset for p, offset in targets.items())
