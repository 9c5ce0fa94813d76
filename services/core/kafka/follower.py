"""Read a few small partitions whole from their start, outside any group, then follow them live.

The compacted and control topics every process keeps in memory (tenants, keys,
spend, job control) are read this way: the partitions' ends are taken at start,
each record is handed to ``apply`` in order, and ``caught_up`` is set once the
consumer's place has reached every end taken at start. The place, not the
offset of the last record seen, decides it: a partition whose last records were
removed (retention, compaction of tombstones) or end in a transaction marker
has offsets no record carries, and would otherwise never count as read.

A failed poll is logged and tried again a second later; the process stays up
and, until the topics are read, not ready. Any other exception (a bug: ``apply``
handles undecodable records itself) ends the following and is reported to the
process's ``Breakdown``: a process whose copy stopped would go on serving it
stale (a revoked key honoured, a cancel never seen), so it is replaced instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from services.core.breakdown import Breakdown
from services.core.errors import KafkaError
from services.core.kafka.clients import KafkaClients
from services.core.kafka.common import Record, TopicPartition

log = logging.getLogger(__name__)

RETRY_S = 1.0
POLL_RECORDS = 500
POLL_S = 0.1


class PartitionFollower:
    def __init__(
        self,
        clients: KafkaClients,
        group_id: str,
        what: str,
        apply: Callable[[Record], None],
        on_caught_up: Callable[[], None] = lambda: None,
    ) -> None:
        """``what`` names the topics in log lines; ``on_caught_up`` runs once, before the event."""
        self.what = what
        self.caught_up = asyncio.Event()
        self._apply = apply
        self._on_caught_up = on_caught_up
        self._consumer = clients.consumer(group_id)
        self._task: asyncio.Task[None] | None = None

    async def start(self, partitions: Iterable[TopicPartition], breakdown: Breakdown) -> None:
        """Take each partition's ends, assign from its first record, and start following;
        an unexpected end of the following is reported to ``breakdown``."""
        await self._consumer.start()
        starts: dict[TopicPartition, int] = {}
        ends: dict[TopicPartition, int] = {}
        for tp in partitions:
            low, high = await self._consumer.watermarks(*tp)
            starts[tp] = max(low, 0)
            if high > low:
                ends[tp] = high
            log.debug("%s %s[%d] from %d to %d", self.what, *tp, low, high)
        await self._consumer.assign([(t, p, o) for (t, p), o in starts.items()])
        self._task = asyncio.create_task(self._follow(ends), name=f"follow {self.what}")
        breakdown.watch(self._task, f"following the {self.what}")

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        behind = dict(ends)
        while True:
            if not behind and not self.caught_up.is_set():
                self._on_caught_up()
                self.caught_up.set()
            try:
                records = await self._consumer.poll(POLL_RECORDS, POLL_S)
                for rec in records:
                    self._apply(rec)
                if behind:
                    await self._drop_reached(behind)
            except KafkaError as exc:
                log.warning("%s: %s; reading again in %.0fs", self.what, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _drop_reached(self, behind: dict[TopicPartition, int]) -> None:
        for tp, end in list(behind.items()):
            if await self._consumer.position(*tp) >= end:
                del behind[tp]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.close()
