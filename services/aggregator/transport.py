"""Faust's Kafka transport, reading only committed records.

Workers publish a job's terminal event in a Kafka transaction, and a fenced
worker's aborted transaction must never reach the job's state (a finished job is
final). Faust reads ``read_committed`` only in its exactly-once mode, so this
transport turns it on for the at-least-once mode the aggregator runs in (its
state is idempotent, see ``reducer``). Registered under ``kafka-rc://``.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "kafka-rc"


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> str:
    """Make ``kafka-rc://`` mean this transport; returns the scheme."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:ReadCommittedTransport"
    return SCHEME
