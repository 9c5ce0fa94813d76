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
a commit first waits, with a deadline, for those in flight when it began
(``acknowledged``); a commit that cannot be made safe is skipped and made at the
next interval, and a write the broker refused stops the app (its supervisor
restarts it from the last safe commit).
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
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(
        self, offsets: Mapping[Any, int], start_new_transaction: bool = True
    ) -> bool:
        in_flight = set(cast(_Producer, self.app.producer).unacknowledged)
        try:
            safe = await acknowledged(in_flight)
        except ChangelogWriteError as exc:
            log.error("no commit: %s; stopping, to restart from the last safe commit", exc)
            await self.crash(exc)
            return False
        if not safe:
            log.warning(
                "commit skipped: %d table writes unacknowledged after %.0f s",
                sum(1 for f in in_flight if not f.done()),
                ACK_DEADLINE_S,
            )
            return False
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


def register() -> str:
    """Make ``kafka-rc://`` mean this transport; returns the scheme."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:ReadCommittedTransport"
    return SCHEME
