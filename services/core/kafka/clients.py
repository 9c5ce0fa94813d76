"""Where a part gets its Kafka clients: the brokers' by default, a stand-in in fast tests.

The parts that run a loop over Kafka (the worker and its control listener, the
gateway's fan-out, the analytics sink) make their clients through a
``KafkaClients`` instead of naming ``Consumer`` or ``TransactionalProducer``
themselves. Production hands them ``KafkaClients.of(settings)`` (the brokers and the
security settings, ``security.py``); the unit tests
hand them ``tests/support/memory_kafka.MemoryKafka``, which keeps topics and
group offsets in memory, so those loops run in milliseconds. What is Kafka's
behaviour (transactions, rebalances, read_committed) is still tested against a
real broker; the stand-in only replaces the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.core.kafka.admin import Admin
from services.core.kafka.consumer import Consumer
from services.core.kafka.producer import Producer
from services.core.kafka.security import librdkafka_security
from services.core.kafka.transactions import TransactionalProducer
from services.core.settings import Settings


class KafkaClients:
    """Makes consumers, producers and admin clients for one cluster, with its security."""

    def __init__(self, bootstrap: str, security: Mapping[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = dict(security or {})

    @classmethod
    def of(cls, settings: Settings) -> KafkaClients:
        """The process's clients: the settings' brokers and security."""
        return cls(settings.kafka_bootstrap, librdkafka_security(settings))

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        return Consumer(self.bootstrap, group_id, **self.security, **overrides)

    def producer(self, **overrides: Any) -> Producer:
        return Producer(self.bootstrap, **self.security, **overrides)

    def transactional(self, transactional_id: str, **overrides: Any) -> TransactionalProducer:
        return TransactionalProducer(self.bootstrap, transactional_id, **self.security, **overrides)

    def admin(self, **overrides: Any) -> Admin:
        return Admin(self.bootstrap, **self.security, **overrides)
