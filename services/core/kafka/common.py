"""What the Kafka clients share: librdkafka defaults, record types, error mapping.

``services.core.kafka`` is the only package that imports ``confluent_kafka``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import confluent_kafka as ck

from services.core.errors import KafkaError

_rdkafka_log = logging.getLogger("librdkafka")
_log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RECORD_BYTES = 8 * 1024 * 1024
"""The largest record value we write: a job of the largest body ingest accepts fits with room.
Topics are created with ``max.message.bytes`` a little above it (``RECORD_LIMIT_BYTES``)."""
RECORD_LIMIT_BYTES = MAX_RECORD_BYTES + 64 * 1024
"""Room for the key, headers and batch framing around the largest value."""

PRODUCER_DEFAULTS: dict[str, Any] = {
    "message.max.bytes": RECORD_LIMIT_BYTES,
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 2,
    "compression.type": "lz4",
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
}


class Record(NamedTuple):
    """One consumed record (a tuple: the consumer builds one per message, cheaply)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: list[tuple[str, bytes]] | None = None
    """Record headers: the trace context of a traced job (``services/core/tracing.py``)."""

    def where(self) -> str:
        """``topic[partition]@offset``, the form our logs use."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where the brokers stored a produced record."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Committed:
    """A partition's committed offset (None: nothing committed) and its metadata string."""

    offset: int | None
    metadata: str


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


TopicPartition = tuple[str, int]


def coordinates(msg: ck.Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a delivered or consumed message, which has all three."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise KafkaError(f"message without coordinates: {topic}[{partition}]@{offset}")
    return topic, partition, offset


def error_from(err: ck.KafkaError, what: str, cls: type[KafkaError] = KafkaError) -> KafkaError:
    return cls(f"{what}: {err.str()}", code=err.code(), retriable=err.retriable())


TRANSIENT_CODES = frozenset(
    {
        ck.KafkaError.NOT_LEADER_FOR_PARTITION,
        ck.KafkaError.LEADER_NOT_AVAILABLE,
        ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
        # librdkafka's own "unknown partition/topic": its metadata does not yet show a topic
        # just created (a follower's first watermarks, moments after ensure_topics)
        ck.KafkaError._UNKNOWN_PARTITION,
        ck.KafkaError._UNKNOWN_TOPIC,
        ck.KafkaError.REQUEST_TIMED_OUT,
        ck.KafkaError._TRANSPORT,
        ck.KafkaError._TIMED_OUT,
        ck.KafkaError.FENCED_LEADER_EPOCH,
        ck.KafkaError.UNKNOWN_LEADER_EPOCH,
        ck.KafkaError.NOT_COORDINATOR,
        ck.KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        ck.KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Errors a lookup meets while a new topic's leadership or a group's coordinator settles;
worth retrying."""


def is_transient(err: ck.KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in TRANSIENT_CODES


class TransientRetries:
    """When to ask Kafka again: after a transient error (a leader moving, a coordinator
    loading, a topic just created), with a pause doubling from 50 ms to 1 s, until
    ``timeout``; any other error, or one too late for another try, is raised as ``cls``.
    The schedule of both retry loops: ``retry_transient`` (on the event loop) and
    ``consumer.committed_in_callback`` (blocking, on the consumer's thread)."""

    def __init__(self, what: str, timeout: float, cls: type[KafkaError] = KafkaError) -> None:
        self.what, self.cls = what, cls
        self.give_up = time.monotonic() + timeout
        self.pause = 0.05

    @property
    def left_s(self) -> float:
        """The time left for one more try (at least 0.1 s)."""
        return max(0.1, self.give_up - time.monotonic())

    def pause_after(self, exc: ck.KafkaException) -> float:
        """Seconds to wait before the next try; raises ``exc`` as ``cls`` when there is none."""
        err = exc.args[0]
        if not is_transient(err) or time.monotonic() + self.pause > self.give_up:
            raise error_from(err, self.what, self.cls) from exc
        pause, self.pause = self.pause, min(self.pause * 2, 1.0)
        return pause


async def retry_transient(
    what: str,
    timeout: float,
    attempt: Callable[[], Awaitable[T]],
    cls: type[KafkaError] = KafkaError,
) -> T:
    """``attempt()``, again after transient errors until ``timeout`` (``TransientRetries``)."""
    retries = TransientRetries(what, timeout, cls)
    while True:
        try:
            return await attempt()
        except ck.KafkaException as exc:
            pause = retries.pause_after(exc)
            _log.debug("%s: %s; retrying in %.2fs", what, exc.args[0].str(), pause)
        await asyncio.sleep(pause)
