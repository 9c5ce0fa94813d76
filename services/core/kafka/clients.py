"""Where a part gets its Kafka clients: the brokers' by default, a stand-in in fast tests.

The parts that run a loop over Kafka (the worker and its control listener, the
gateway's fan-out, the analytics sink) make their clients through a
``KafkaClients`` instead of naming ``Consumer`` or ``TransactionalProducer``
themselves. Production hands them ``KafkaClients(bootstrap)``; the unit tests
hand them ``tests/support/memory_kafka.MemoryKafka``, which keeps topics and
group offsets in memory, so those loops run in milliseconds. What is Kafka's
behaviour (transactions, rebalances, read_committed) is still tested against a
real broker; the stand-in only replaces the wire.
"""

from __future__ import annotations

from typing import Any

from services.core.kafka.admin import Admin
from services.core.kafka.consumer import Consumer
from services.core.kafka.producer import Producer
from services.core.kafka.transactions import TransactionalProducer


class KafkaClients:
    """Makes consumers, producers and admin clients for one cluster."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        return Consumer(self.bootstrap, group_id, **overrides)

    def producer(self, **overrides: Any) -> Producer:
        return Producer(self.bootstrap, **overrides)

    def transactional(self, transactional_id: str, **overrides: Any) -> TransactionalProducer:
        return TransactionalProducer(self.bootstrap, transactional_id, **overrides)

    def admin(self, **overrides: Any) -> Admin:
        return Admin(self.bootstrap, **overrides)
