"""Faust's Kafka transport, reading only committed records, committing only what is stored.

Workers publish a job's terminal event in a Kafka transaction, and a fenced
worker's aborted transaction must never reach the job's state (a finished job is
final). Faust reads ``read_committed`` only in its exactly-once mode, so this
transport turns it on for the at-least-once mode the aggregator runs in (its
state is idempotent, see ``reducer``). Registered under ``kafka-rc://``.

At-least-once also needs every changelog write an event caused to be stored
before the event's offset is committed. Faust flushes its producer first, but
its buffer's flush gives up after 0.1 s without a send (``flush_atmost``), so on
a busy machine an offset could be committed while the states it produced still
sat in the buffer — and a kill -9 then lost them for good (a job's state without
its ``started``; the fault test saw it). ``drained`` empties the buffer, with a
deadline, before Faust commits; a commit it cannot make safe is skipped and
made at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import aiokafka
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "kafka-rc"
DRAIN_DEADLINE_S = 10.0

log = logging.getLogger(__name__)


class Buffer(Protocol):
    """What ``drained`` needs of Faust's ``ProducerBuffer``."""

    @property
    def size(self) -> int: ...

    async def flush(self) -> None: ...


async def drained(buffer: Buffer, deadline_s: float = DRAIN_DEADLINE_S) -> bool:
    """Flush ``buffer`` until it is empty (True), or False once ``deadline_s`` has passed."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while buffer.size:
        if loop.time() > give_up:
            return False
        await buffer.flush()
    # The last message taken from the queue may still be on its way into the client.
    await asyncio.sleep(0)
    return True


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
        buffer = self.app.producer.buffer
        if not await drained(buffer):
            log.warning(
                "commit skipped: %d changelog writes still unsent after %.0fs",
                buffer.size,
                DRAIN_DEADLINE_S,
            )
            return False
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> str:
    """Make ``kafka-rc://`` mean this transport; returns the scheme."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:ReadCommittedTransport"
    return SCHEME
