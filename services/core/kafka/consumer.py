"""A consumer whose blocking calls all run on one single-thread executor.

A librdkafka consumer must not be used from two threads at once. Offsets are
never committed automatically: callers commit what they have finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import confluent_kafka as ck

from services.core.errors import ConsumeError, KafkaError
from services.core.kafka.common import (
    CONSUMER_DEFAULTS,
    Committed,
    Record,
    TopicPartition,
    TransientRetries,
    _rdkafka_log,
    coordinates,
    error_from,
    is_transient,
    retry_transient,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

RevokeCallback = Callable[[list[TopicPartition]], None]
AssignCallback = Callable[[dict[TopicPartition, Committed]], None]
COMMITTED_TIMEOUT_S = 30.0


def _by_partition(tps: list[ck.TopicPartition]) -> dict[TopicPartition, Committed]:
    return {
        (tp.topic, tp.partition): Committed(
            tp.offset if tp.offset >= 0 else None, tp.metadata or ""
        )
        for tp in tps
    }


def committed_or_raise(
    c: ck.Consumer, tps: list[ck.TopicPartition], timeout: float
) -> list[ck.TopicPartition]:
    """``c.committed``, raising the first partition's error instead of returning it."""
    found: list[ck.TopicPartition] = c.committed(tps, timeout=timeout)
    failed = next((tp.error for tp in found if tp.error is not None), None)
    if failed is not None:
        raise ck.KafkaException(failed)
    return found


def committed_in_callback(
    c: ck.Consumer, tps: list[ck.TopicPartition], timeout: float = COMMITTED_TIMEOUT_S
) -> list[ck.TopicPartition]:
    """``committed_or_raise`` from inside a rebalance callback (on the consumer's thread):
    transient errors are asked again until ``timeout``; then a ``ConsumeError``, which
    ``poll`` raises to its caller. A partition's error must never read as "no commit": a
    caller would then forget the note (the sink's intent) that the commit carries."""
    what = "committed offsets of assigned partitions"
    retries = TransientRetries(what, timeout, ConsumeError)
    while True:
        try:
            return committed_or_raise(c, tps, retries.left_s)
        except ck.KafkaException as exc:
            pause = retries.pause_after(exc)
            log.info("%s: %s; asking again", what, exc.args[0].str())
        time.sleep(pause)


def _poll_batch(c: ck.Consumer, max_records: int, timeout: float) -> list[ck.Message]:
    first = c.poll(timeout)
    if first is None:
        return []
    return [first, *c.consume(max_records - 1, 0)] if max_records > 1 else [first]


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
        return await retry_transient(what, timeout, lambda: self._call(fn, *args), ConsumeError)

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
        on_revoke: RevokeCallback | None = None,
        on_lost: RevokeCallback | None = None,
    ) -> None:
        """Join the group. The callbacks run on the consumer thread, inside ``poll``.

        ``on_assign`` receives each new partition with the group's committed offset
        and its metadata, read before any of the partition's records is returned.
        ``on_lost`` (default: ``on_revoke``) is told of partitions taken away without
        a rebalance: the session expired, as when the brokers stopped answering.
        """

        def assigned(c: ck.Consumer, tps: list[ck.TopicPartition]) -> None:
            if on_assign is None:
                return
            on_assign(_by_partition(committed_in_callback(c, tps) if tps else []))

        def revoked(_c: ck.Consumer, tps: list[ck.TopicPartition]) -> None:
            if on_revoke is not None:
                on_revoke([(tp.topic, tp.partition) for tp in tps])

        def lost(_c: ck.Consumer, tps: list[ck.TopicPartition]) -> None:
            if (callback := on_lost or on_revoke) is not None:
                callback([(tp.topic, tp.partition) for tp in tps])

        await self._call(
            self._c.subscribe, topics, on_assign=assigned, on_revoke=revoked, on_lost=lost
        )

    async def committed(
        self, tps: Iterable[TopicPartition], timeout: float = COMMITTED_TIMEOUT_S
    ) -> dict[TopicPartition, Committed]:
        """The group's committed offset and metadata for each partition; a partition's own
        error raises (a transient one, such as a new group's NOT_COORDINATOR, is asked again)."""
        res = await self._lookup(
            "committed offsets",
            timeout,
            committed_or_raise,
            self._c,
            [ck.TopicPartition(t, p) for t, p in tps],
            timeout,
        )
        return _by_partition(res)

    async def group_metadata(self) -> Any:
        """The group generation token a transaction needs to commit this consumer's offsets."""
        return await self._call(self._c.consumer_group_metadata)

    async def assign(self, positions: Iterable[tuple[str, int, int]]) -> None:
        """Read these partitions from these offsets, outside any group."""
        tps = [ck.TopicPartition(t, p, o) for t, p, o in positions]
        await self._call(self._c.assign, tps)

    async def poll(self, max_records: int = 500, timeout: float = 0.2) -> list[Record]:
        """Up to ``max_records`` records, returned as soon as one is there; [] after ``timeout``.

        librdkafka's batch ``consume`` waits out its whole timeout unless the batch
        fills, which would hold every live token back; so wait for one message, then
        take whatever else is already fetched without waiting.
        """
        msgs = await self._call(_poll_batch, self._c, max_records, timeout)
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
                raise error_from(err, f"consume {m.topic()}[{m.partition()}]", ConsumeError)
            _, ts = m.timestamp()
            headers = cast("list[tuple[str, bytes]] | None", m.headers())
            out.append(Record(*coordinates(m), m.key(), m.value(), ts, headers))
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int], metadata: str = "") -> None:
        """Commit, for each partition, the offset of the next record to read (and a note)."""
        if not offsets:
            return
        tps = [ck.TopicPartition(t, p, o, metadata=metadata) for (t, p), o in offsets.items()]
        try:
            await self._call(self._c.commit, offsets=tps, asynchronous=False)
        except ck.KafkaException as exc:
            raise error_from(exc.args[0], "commit", ConsumeError) from exc

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

    async def lag(self, tps: Iterable[TopicPartition]) -> int:
        """Records behind the high watermarks, as the last fetch responses told: no broker call.

        Counted from the consumer's own position, which moves past transaction
        markers, so a caught-up ``read_committed`` reader shows 0.
        """

        def behind(c: ck.Consumer) -> int:
            parts = [ck.TopicPartition(t, p) for t, p in tps]
            total = 0
            for tp in c.position(parts):
                try:
                    marks = c.get_watermark_offsets(tp, cached=True)
                except ck.KafkaException:
                    continue  # no fetch response for it yet
                if marks and tp.offset >= 0:
                    total += max(0, marks[1] - tp.offset)
            return total

        return await self._call(behind, self._c)

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self._call(consumer.close)
        await asyncio.to_thread(self._executor.shutdown, True)
