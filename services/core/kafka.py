"""The only module that imports ``confluent_kafka``.

Everything else uses the three small clients here:

* ``Producer`` — the idempotent producer (``acks=all``, ``enable.idempotence``,
  ``murmur2_random`` so Java, Faust and librdkafka agree on a key's partition).
  A background thread polls it; each ``produce`` returns an asyncio future that
  the delivery callback completes with ``loop.call_soon_threadsafe``. A record
  is durable once its future resolves; a failed delivery raises ``DeliveryError``.
* ``Consumer`` — every blocking call runs on one single-thread executor, since
  a librdkafka consumer must not be used from two threads at once. Offsets are
  never committed automatically: callers commit what they have finished.
* ``Admin`` — topic creation (harmless when they exist), group and cluster checks.

Errors become ``services.core.errors`` types, decided on ``KafkaError.code()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from services.core.errors import (
    ConsumeError,
    DeliveryError,
    KafkaError,
    KafkaUnavailableError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_rdkafka_log = logging.getLogger("librdkafka")

PRODUCER_DEFAULTS: dict[str, Any] = {
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


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

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
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


TopicPartition = tuple[str, int]


def _coordinates(msg: ck.Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a delivered or consumed message, which has all three."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise KafkaError(f"message without coordinates: {topic}[{partition}]@{offset}")
    return topic, partition, offset


def _error(err: ck.KafkaError, what: str, cls: type[KafkaError] = KafkaError) -> KafkaError:
    return cls(f"{what}: {err.str()}", code=err.code(), retriable=err.retriable())


class Producer:
    """The idempotent producer, as an async context manager that flushes on exit."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "logger": _rdkafka_log,
            **PRODUCER_DEFAULTS,
            **overrides,
        }
        self._producer: ck.Producer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._producer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._producer = ck.Producer(self._config)
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll_forever, name="producer-poll", daemon=True
        )
        self._poller.start()

    def _poll_forever(self) -> None:
        assert self._producer is not None
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
    ) -> asyncio.Future[Delivered]:
        """Hand a record to librdkafka; the returned future resolves on delivery."""
        if self._producer is None:
            self.start()
        assert self._producer is not None and self._loop is not None
        loop = self._loop
        fut: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(err: ck.KafkaError | None, msg: ck.Message) -> None:
            if err is not None:
                result: Delivered | KafkaError = _error(err, f"delivery to {topic}", DeliveryError)
            else:
                result = Delivered(*_coordinates(msg))
            loop.call_soon_threadsafe(_settle, fut, result)

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return fut
            except BufferError:
                await asyncio.sleep(0.005)
            except ck.KafkaException as exc:
                raise _error(exc.args[0], f"produce to {topic}", DeliveryError) from exc

    async def send(self, topic: str, key: str | bytes | None, value: bytes) -> Delivered:
        """Produce one record and wait until the brokers acknowledged it."""
        return await (await self.produce(topic, key, value))

    async def flush(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        left = await asyncio.to_thread(self._producer.flush, timeout)
        if left:
            raise DeliveryError(f"{left} records not delivered within {timeout}s")

    async def close(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            await self.flush(timeout)
        finally:
            self._stop.set()
            if self._poller is not None:
                await asyncio.to_thread(self._poller.join)
            self._producer = None


def _settle(fut: asyncio.Future[Delivered], result: Delivered | KafkaError) -> None:
    if fut.done():
        return
    if isinstance(result, KafkaError):
        fut.set_exception(result)
    else:
        fut.set_result(result)


AssignCallback = Callable[[list[TopicPartition]], None]


TRANSIENT_CODES = frozenset(
    {
        ck.KafkaError.NOT_LEADER_FOR_PARTITION,
        ck.KafkaError.LEADER_NOT_AVAILABLE,
        ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
        ck.KafkaError.REQUEST_TIMED_OUT,
        ck.KafkaError._TRANSPORT,
        ck.KafkaError._TIMED_OUT,
        ck.KafkaError.FENCED_LEADER_EPOCH,
        ck.KafkaError.UNKNOWN_LEADER_EPOCH,
    }
)
"""Errors a lookup meets while a new topic's leadership settles; worth retrying."""


def is_transient(err: ck.KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in TRANSIENT_CODES


class Consumer:
    """A confluent-kafka consumer whose blocking calls run on one dedicated thread."""

    def __init__(self, bootstrap: str, group_id: str, **overrides: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "logger": _rdkafka_log,
            "group.id": group_id,
            **CONSUMER_DEFAULTS,
            **overrides,
        }
        self._consumer: ck.Consumer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consumer")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def _lookup(self, what: str, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        """Run a broker lookup, retrying transient errors (a leader moving) until ``timeout``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        backoff = 0.05
        while True:
            try:
                return await self._call(fn, *args)
            except ck.KafkaException as exc:
                err = exc.args[0]
                if not is_transient(err) or loop.time() + backoff > give_up:
                    raise _error(err, what, ConsumeError) from exc
                log.debug("%s: %s; retrying in %.2fs", what, err.str(), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    @property
    def _c(self) -> ck.Consumer:
        if self._consumer is None:
            raise KafkaError("consumer not started")
        return self._consumer

    async def start(self) -> None:
        if self._consumer is None:
            self._consumer = await self._call(ck.Consumer, self._config)

    async def subscribe(
        self,
        topics: list[str],
        on_assign: AssignCallback | None = None,
        on_revoke: AssignCallback | None = None,
    ) -> None:
        """Join the group. The callbacks run on the consumer thread, inside ``poll``."""

        def wrap(cb: AssignCallback | None) -> Callable[[Any, list[ck.TopicPartition]], None]:
            def inner(_c: Any, tps: list[ck.TopicPartition]) -> None:
                if cb is not None:
                    cb([(tp.topic, tp.partition) for tp in tps])

            return inner

        await self._call(
            self._c.subscribe, topics, on_assign=wrap(on_assign), on_revoke=wrap(on_revoke)
        )

    async def assign(self, positions: Iterable[tuple[str, int, int]]) -> None:
        """Read these partitions from these offsets, outside any group."""
        tps = [ck.TopicPartition(t, p, o) for t, p, o in positions]
        await self._call(self._c.assign, tps)

    async def poll(self, max_records: int = 500, timeout: float = 0.2) -> list[Record]:
        """Up to ``max_records`` records; an empty list when none came within ``timeout``."""
        msgs = await self._call(self._c.consume, max_records, timeout)
        out: list[Record] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    continue
                if is_transient(err):
                    log.info(
                        "consume %s[%s]: %s (librdkafka retries)",
                        m.topic(),
                        m.partition(),
                        err.str(),
                    )
                    continue
                raise _error(err, f"consume {m.topic()}[{m.partition()}]", ConsumeError)
            _, ts = m.timestamp()
            out.append(Record(*_coordinates(m), m.key(), m.value(), ts))
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, for each partition, the offset of the next record to read."""
        if not offsets:
            return
        tps = [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            await self._call(self._c.commit, offsets=tps, asynchronous=False)
        except ck.KafkaException as exc:
            raise _error(exc.args[0], "commit", ConsumeError) from exc

    async def pause(self, tps: Iterable[TopicPartition]) -> None:
        await self._call(self._c.pause, [ck.TopicPartition(t, p) for t, p in tps])

    async def resume(self, tps: Iterable[TopicPartition]) -> None:
        await self._call(self._c.resume, [ck.TopicPartition(t, p) for t, p in tps])

    async def assignment(self) -> list[TopicPartition]:
        return [(tp.topic, tp.partition) for tp in await self._call(self._c.assignment)]

    async def position(self, topic: str, partition: int) -> int:
        """The offset of the next record this consumer will read (negative: not known yet)."""
        res = await self._lookup(
            f"position in {topic}[{partition}]",
            10.0,
            self._c.position,
            [ck.TopicPartition(topic, partition)],
        )
        off: int = res[0].offset
        return off

    async def offset_for_time(
        self, topic: str, partition: int, ts_ms: int, timeout: float = 10.0
    ) -> int | None:
        """The first offset whose timestamp is at or after ``ts_ms``; None if there is none."""
        res = await self._lookup(
            f"offset for time {ts_ms} in {topic}[{partition}]",
            timeout,
            self._c.offsets_for_times,
            [ck.TopicPartition(topic, partition, ts_ms)],
            min(timeout, 5.0),
        )
        off: int = res[0].offset
        return None if off < 0 else off

    async def watermarks(
        self, topic: str, partition: int, timeout: float = 10.0
    ) -> tuple[int, int]:
        """(low, high): the first offset held and the offset the next record will get."""
        lo, hi = await self._lookup(
            f"watermarks of {topic}[{partition}]",
            timeout,
            self._c.get_watermark_offsets,
            ck.TopicPartition(topic, partition),
            min(timeout, 5.0),
        )
        return lo, hi

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self._call(consumer.close)
        await asyncio.to_thread(self._executor.shutdown, True)


class Admin:
    """Topic and cluster administration."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _rdkafka_log}
        self._admin = AdminClient({**config, **overrides})

    async def topics(self, timeout: float = 5.0) -> dict[str, int]:
        """Existing topics → partition count. Raises ``KafkaUnavailableError`` if none answers."""
        try:
            md = await asyncio.to_thread(self._admin.list_topics, timeout=timeout)
        except ck.KafkaException as exc:
            raise KafkaUnavailableError(f"no broker answered: {exc}") from exc
        return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}

    async def ensure_topics(self, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        existing = await self.topics(timeout=timeout)
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout,
        )
        created = []
        for name, fut in futures.items():
            try:
                await asyncio.wrap_future(fut)
                created.append(name)
            except ck.KafkaException as exc:
                err = exc.args[0]
                if err.code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise _error(err, f"create topic {name}") from exc
        if created:
            log.info("created topics %s", ", ".join(sorted(created)))
        return created

    async def group_member_count(self, group: str, timeout: float = 5.0) -> int:
        """How many consumers are in ``group`` now (0 if it does not exist)."""
        futures = self._admin.describe_consumer_groups([group], request_timeout=timeout)
        try:
            desc = await asyncio.wrap_future(futures[group])
        except ck.KafkaException as exc:
            err = exc.args[0]
            if err.code() == ck.KafkaError.GROUP_ID_NOT_FOUND:
                return 0
            raise _error(err, f"describe group {group}") from exc
        return len(desc.members)

    async def delete_topics(self, names: list[str], timeout: float = 30.0) -> None:
        if not names:
            return
        for name, fut in self._admin.delete_topics(names, operation_timeout=timeout).items():
            try:
                await asyncio.wrap_future(fut)
            except ck.KafkaException as exc:
                if exc.args[0].code() != ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise _error(exc.args[0], f"delete topic {name}") from exc
