"""The only package that imports ``confluent_kafka``.

Everything else uses the small clients of this package:

* ``Producer`` — the idempotent producer (``acks=all``, ``enable.idempotence``,
  ``murmur2_random`` so Java, Faust and librdkafka agree on a key's partition).
  A background thread polls it; each ``produce`` returns an asyncio future that
  the delivery callback completes with ``loop.call_soon_threadsafe``. A record
  is durable once its future resolves; a failed delivery raises ``DeliveryError``.
* ``Consumer`` — every blocking call runs on one single-thread executor, since
  a librdkafka consumer must not be used from two threads at once. Offsets are
  never committed automatically: callers commit what they have finished.
* ``TransactionalProducer`` — records and consumer offsets committed together.
* ``Admin`` — topic creation (harmless when they exist), group and cluster checks.
* ``KafkaClients`` — makes the four for one cluster: the seam where fast tests hand
  the worker, fan-out and sink an in-memory stand-in instead.
* ``probe.Probe`` — whether Kafka answers, checked in the background so that
  ``/readyz`` and submissions know at once (``probe`` is imported by path).

Errors become ``services.core.errors`` types, decided on ``KafkaError.code()``.
"""

from services.core.kafka.admin import Admin
from services.core.kafka.clients import KafkaClients
from services.core.kafka.common import (
    MAX_RECORD_BYTES,
    RECORD_LIMIT_BYTES,
    Committed,
    Delivered,
    Record,
    TopicPartition,
    TopicSpec,
)
from services.core.kafka.consumer import Consumer
from services.core.kafka.producer import Producer
from services.core.kafka.transactions import (
    OffsetCommit,
    OutRecord,
    ProducerFencedError,
    TransactionAbortedError,
    TransactionalProducer,
)

__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD_LIMIT_BYTES",
    "Admin",
    "Committed",
    "Consumer",
    "Delivered",
    "KafkaClients",
    "OffsetCommit",
    "OutRecord",
    "Producer",
    "ProducerFencedError",
    "Record",
    "TopicPartition",
    "TopicSpec",
    "TransactionAbortedError",
    "TransactionalProducer",
]
