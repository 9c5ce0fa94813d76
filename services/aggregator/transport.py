"""Faust's Kafka transport, reading only committed records, committing only what is stored.

Workers publish a job's terminal event in a Kafka transaction, and a fenced
worker's aborted transaction must never reach the job's state (a finished job is
final). Faust reads ``read_committed`` only in its exactly-once mode, so this
transport turns it on for the at-least-once mode the aggregator runs in (its
state is idempotent, see ``reducer``). Registered under ``kafka-rc://``.

At-least-once also needs every changelog write an event caused to be stored by
the broker before the event's offset is committed. Faust's table writes go
through a buffer that a background task empties into the Kafka client; before a
commit Faust flushes that buffer and then the client, but the buffer's flush
gives up after 0.1 s without a send, and a message the task has taken from the
buffer but not yet handed to the client (the client waiting for metadata or
room) is in neither. A commit could then pass states never sent, and a kill -9
lost them for good — invisible with RocksDB, which keeps its own copy, but the
changelog-only ``memory://`` store recovered a job without its ``started``, or
never final (the kill -9 fault test saw both, on a busy machine). So the producer
keeps the future of every buffered message until the broker acknowledges it, and
a commit first waits for those in flight when it began (``acknowledged``, saying so
every ``ACK_DEADLINE_S``); a write the broker refused stops the app (its supervisor
restarts it from the last safe commit).

And a stream must resume exactly at its committed offsets. Faust marks newly
assigned partitions fetchable before it seeks them there (after table
recovery), so a restarted instance could apply a partition's newest records
first and only then replay from its commit — and the reducer, keeping the highest
event applied, took the replayed ones for duplicates (a job ended without its
``started``; the kill -9 fault test saw it). Until that seek, stream records are
dropped (``stream_records_after_seek``), to be read again, in order, after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any, cast

import aiokafka
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import FutureMessage

SCHEME = "kafka-rc"
ACK_DEADLINE_S = 10.0

log = logging.getLogger(__name__)


class ChangelogWriteError(Exception):
    """The broker refused a table write: committing past it would lose it."""


async def acknowledged(
    sends: Collection[asyncio.Future[Any]], deadline_s: float = ACK_DEADLINE_S
) -> bool:
    """Wait until every send in ``sends`` is acknowledged: True once all are, False if
    ``deadline_s`` passed first; raises ``ChangelogWriteError`` if one failed."""
    if not sends:
        return True
    _, pending = await asyncio.wait(sends, timeout=deadline_s)
    if pending:
        return False
    for send in sends:
        if send.cancelled():
            raise ChangelogWriteError("a table write was cancelled before it was sent")
        if (exc := send.exception()) is not None:
            raise ChangelogWriteError(f"a table write failed: {exc!r}") from exc
    return True


class _Producer(faust_aiokafka.Producer):
    """Faust's producer, holding each buffered message's future until it is acknowledged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.unacknowledged: set[FutureMessage] = set()

    def send_soon(self, fut: FutureMessage) -> None:
        self.unacknowledged.add(fut)
        fut.add_done_callback(self.unacknowledged.discard)
        super().send_soon(fut)


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    _seek_pending = True
    """Between an assignment and Faust's seek of the stream partitions to their committed
    offsets (after table recovery): records read then are not where the stream resumes."""
    _fetching: asyncio.Lock | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    def _fetch_lock(self) -> asyncio.Lock:
        if self._fetching is None:
            self._fetching = asyncio.Lock()
        return self._fetching

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        self._seek_pending = True
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        # Never during a fetch: what a fetch returns is then wholly before the seek (dropped)
        # or wholly after it (the client discards what it fetched from the old position).
        async with self._fetch_lock():
            await super().perform_seek()
            self._seek_pending = False

    async def _getmany(self, active_partitions: set[Any] | None, timeout: float) -> Any:
        """Faust's fetch, without the stream records read before the seek to the committed
        offsets (``stream_records_after_seek``)."""
        async with self._fetch_lock():
            records = await super()._getmany(active_partitions, timeout)
            if not (records and self._seek_pending):
                return records
            kept, dropped = stream_records_after_seek(records, self.app.tables.changelog_topics)
        if dropped:
            log.info("%d records read before the seek to the committed offsets dropped", dropped)
        return kept

    async def _commit_offsets(
        self, offsets: Mapping[Any, int], start_new_transaction: bool = True
    ) -> bool:
        # Faust has already taken these offsets off its list of acked ones: a commit given
        # up here would never be made (its later commits wait for them), so it waits.
        in_flight = set(cast(_Producer, self.app.producer).unacknowledged)
        try:
            while not await acknowledged(in_flight):
                log.warning(
                    "commit waits: %d table writes unacknowledged after %.0f s",
                    sum(1 for f in in_flight if not f.done()),
                    ACK_DEADLINE_S,
                )
        except ChangelogWriteError as exc:
            log.error("no commit: %s; stopping, to restart from the last safe commit", exc)
            await self.crash(exc)
            return False
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed


def stream_records_after_seek(
    records: Mapping[Any, list[Any]], changelogs: Collection[str]
) -> tuple[dict[Any, list[Any]], int]:
    """What of a fetch made before the seek to the committed offsets may reach a stream:
    only table recovery's changelog records; and how many stream records were dropped.

    Faust marks newly assigned partitions fetchable at once and seeks them to their
    committed offsets only after the tables are recovered. Records fetched in between
    come from wherever the client stood (a restarted aggregator was seen reading a
    partition's last records first, then its committed offset's). Applied, they would
    run ahead of the replay, and the reducer, which keeps the highest event applied,
    would then take the replayed earlier events for duplicates: a job ended without its
    ``started``. Dropped, they are read again, in order, after the seek.
    """
    kept = {tp: recs for tp, recs in records.items() if tp.topic in changelogs}
    dropped = sum(len(recs) for tp, recs in records.items() if tp.topic not in changelogs)
    return kept, dropped


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


def register() -> str:
    """Make ``kafka-rc://`` mean this transport; returns the scheme."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:ReadCommittedTransport"
    return SCHEME
