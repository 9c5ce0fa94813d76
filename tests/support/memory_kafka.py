"""An in-memory stand-in for the small surface of ``services.core.kafka``, for fast tests.

``MemoryKafka`` is a ``KafkaClients``: hand it to ``WorkerRunner``, ``Fanout`` or
``Sink`` and their loops run against topics kept in lists, with group offsets in
a dict, in milliseconds. It keeps what those loops rely on:

* a record's partition is Kafka's murmur2 of its key (``partition_for``), offsets
  count from 0 per partition, a consumer reads each partition in order;
* a group's members share its partitions; a member that joins or leaves moves
  partitions, and each member hears of it (revoke, then assign with the group's
  committed offsets and metadata) inside its next ``poll``, on another thread,
  as librdkafka's callbacks are;
* a transaction's records and offsets appear together or not at all, and only a
  member that still owns a partition may commit its offset in one;
* faults on demand: ``fail_transactions(n)`` aborts the next n transactions,
  ``fail_polls(n)`` makes the next n polls raise, as a broker that went away does.

It is no broker: no replication, no retention, no transaction markers, one
event loop. Behaviour that is Kafka's own is tested against a real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.errors import ConsumeError, KafkaError
from services.core.kafka import (
    Committed,
    Delivered,
    KafkaClients,
    OffsetCommit,
    OutRecord,
    Record,
    TopicPartition,
    TopicSpec,
    TransactionAbortedError,
)
from services.core.partitioner import partition_for


@dataclass
class Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, Committed] = field(default_factory=dict)
    generation: int = 0


class MemoryKafka(KafkaClients):
    """Topics, groups and their offsets, in memory; makes clients that use them."""

    def __init__(self, partitions: int = 4) -> None:
        super().__init__("memory")
        self.default_partitions = partitions
        self.topics: dict[str, list[list[Record]]] = {}
        self.groups: dict[str, Group] = {}
        self._grown = asyncio.Event()
        self._failing_transactions: list[str] = []
        self._failing_polls: list[str] = []
        self.transactions = 0
        """How many transactions committed."""

    # --- the clients ------------------------------------------------------------------------

    def consumer(self, group_id: str, **overrides: Any) -> MemoryConsumer:  # type: ignore[override]
        return MemoryConsumer(self, group_id)

    def producer(self, **overrides: Any) -> MemoryProducer:  # type: ignore[override]
        return MemoryProducer(self)

    def transactional(  # type: ignore[override]
        self, transactional_id: str, **overrides: Any
    ) -> MemoryTransactionalProducer:
        return MemoryTransactionalProducer(self, transactional_id)

    def admin(self, **overrides: Any) -> MemoryAdmin:  # type: ignore[override]
        return MemoryAdmin(self)

    # --- the log ----------------------------------------------------------------------------

    def create(self, topic: str, partitions: int | None = None) -> list[list[Record]]:
        if topic not in self.topics:
            self.topics[topic] = [[] for _ in range(partitions or self.default_partitions)]
        return self.topics[topic]

    def append(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Delivered:
        parts = self.create(topic)
        raw = key.encode() if isinstance(key, str) else key
        if partition is None:
            partition = partition_for(raw, len(parts)) if raw else 0
        log = parts[partition]
        rec = Record(topic, partition, len(log), raw, value, int(time.time() * 1000), headers)
        log.append(rec)
        return Delivered(topic, partition, rec.offset)

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition."""
        return [r for part in self.create(topic) for r in part]

    def grew(self) -> None:
        """Wake every consumer waiting in ``poll``."""
        self._grown.set()
        self._grown = asyncio.Event()

    async def wait_for_growth(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._grown.wait(), timeout)

    async def until(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        """``check()`` once truthy, looked at whenever a topic grows; fails after ``timeout``."""
        give_up = time.monotonic() + timeout
        while not (found := check()):
            if time.monotonic() > give_up:
                raise TimeoutError(f"not reached in {timeout}s")
            await self.wait_for_growth(0.05)
        return found

    # --- groups -----------------------------------------------------------------------------

    def join(self, member: MemoryConsumer) -> None:
        group = self.groups.setdefault(member.group_id, Group())
        group.members.append(member)
        self._rebalance(group)

    def leave(self, member: MemoryConsumer) -> None:
        group = self.groups.get(member.group_id)
        if group is not None and member in group.members:
            group.members.remove(member)
            self._rebalance(group)

    def _rebalance(self, group: Group) -> None:
        """Deal the group's partitions round robin; each member hears of its changes."""
        group.generation += 1
        if not group.members:
            return
        topics = sorted({t for m in group.members for t in m.subscription})
        tps = [(t, p) for t in topics for p in range(len(self.create(t)))]
        share: dict[int, set[TopicPartition]] = {i: set() for i in range(len(group.members))}
        for i, tp in enumerate(tps):
            share[i % len(group.members)].add(tp)
        for i, member in enumerate(group.members):
            member.reassign(share[i])
        self.grew()

    def owner(self, group_id: str, tp: TopicPartition) -> MemoryConsumer | None:
        group = self.groups.get(group_id)
        if group is None:
            return None
        return next((m for m in group.members if tp in m.owned), None)

    def commit(
        self, group_id: str, offsets: Mapping[TopicPartition, int], metadata: str = ""
    ) -> None:
        group = self.groups.setdefault(group_id, Group())
        for tp, offset in offsets.items():
            group.committed[tp] = Committed(offset, metadata)

    def committed(self, group_id: str, tp: TopicPartition) -> Committed:
        group = self.groups.get(group_id)
        found = group.committed.get(tp) if group is not None else None
        return found or Committed(None, "")

    # --- faults -----------------------------------------------------------------------------

    def fail_transactions(self, n: int, why: str = "the coordinator went away") -> None:
        self._failing_transactions += [why] * n

    def fail_polls(self, n: int, why: str = "all brokers down") -> None:
        self._failing_polls += [why] * n

    @property
    def faults_left(self) -> int:
        """Faults asked for that have not happened yet."""
        return len(self._failing_transactions) + len(self._failing_polls)

    def _take(self, failing: list[str]) -> str | None:
        return failing.pop(0) if failing else None


class MemoryConsumer:
    def __init__(self, kafka: MemoryKafka, group_id: str) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.subscription: list[str] = []
        self.owned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self._changes: list[tuple[set[TopicPartition], set[TopicPartition]]] = []
        self._callbacks: tuple[Any, Any, Any] = (None, None, None)
        self._in_group = False
        self.closed = False

    async def __aenter__(self) -> MemoryConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.closed = False

    async def subscribe(
        self,
        topics: list[str],
        on_assign: Any = None,
        on_revoke: Any = None,
        on_lost: Any = None,
    ) -> None:
        self.subscription = list(topics)
        self._callbacks = (on_assign, on_revoke, on_lost)
        self._in_group = True
        self.kafka.join(self)

    def reassign(self, share: set[TopicPartition]) -> None:
        """The group dealt this member ``share``: tell it in its next poll."""
        self._changes.append((self.owned - share, share - self.owned))
        self.owned = set(share)

    async def _hear_changes(self) -> None:
        on_assign, on_revoke, _ = self._callbacks
        while self._changes:
            revoked, added = self._changes.pop(0)
            for tp in revoked:
                self.positions.pop(tp, None)
                self.paused.discard(tp)
            if revoked and on_revoke is not None:
                await asyncio.to_thread(on_revoke, sorted(revoked))
            committed = {tp: self.kafka.committed(self.group_id, tp) for tp in sorted(added)}
            for tp, c in committed.items():
                self.positions[tp] = c.offset if c.offset is not None else 0
            if added and on_assign is not None:
                await asyncio.to_thread(on_assign, committed)

    async def committed(
        self, tps: Iterable[TopicPartition], timeout: float = 10.0
    ) -> dict[TopicPartition, Committed]:
        return {tp: self.kafka.committed(self.group_id, tp) for tp in tps}

    async def group_metadata(self) -> Any:
        return (self.group_id, self)

    async def assign(self, positions: Iterable[tuple[str, int, int]]) -> None:
        for t, p, o in positions:
            self.kafka.create(t)
            self.positions[(t, p)] = o

    async def poll(self, max_records: int = 500, timeout: float = 0.2) -> list[Record]:
        if self.closed:
            raise KafkaError("consumer not started")
        if (why := self.kafka._take(self.kafka._failing_polls)) is not None:
            raise ConsumeError(f"consume: {why}")
        await self._hear_changes()
        out = self._take_records(max_records)
        if not out:
            await self.kafka.wait_for_growth(timeout)
            await self._hear_changes()
            out = self._take_records(max_records)
        return out

    def _take_records(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp, pos in sorted(self.positions.items()):
            if tp in self.paused or len(out) >= max_records:
                continue
            log = self.kafka.create(tp[0])[tp[1]]
            got = log[pos : pos + max_records - len(out)]
            out += got
            self.positions[tp] = pos + len(got)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int], metadata: str = "") -> None:
        if self._in_group and (stray := set(offsets) - self.owned):
            raise ConsumeError(f"commit: {sorted(stray)} not assigned to this member")
        self.kafka.commit(self.group_id, offsets, metadata)

    async def pause(self, tps: Iterable[TopicPartition]) -> None:
        self.paused |= set(tps)

    async def resume(self, tps: Iterable[TopicPartition]) -> None:
        self.paused -= set(tps)
        self.kafka.grew()

    async def assignment(self) -> list[TopicPartition]:
        return sorted(self.positions)

    async def position(self, topic: str, partition: int) -> int:
        return self.positions.get((topic, partition), -1001)

    async def offset_for_time(
        self, topic: str, partition: int, ts_ms: int, timeout: float = 10.0
    ) -> int | None:
        log = self.kafka.create(topic)[partition]
        return next((r.offset for r in log if r.timestamp_ms >= ts_ms), None)

    async def watermarks(
        self, topic: str, partition: int, timeout: float = 10.0
    ) -> tuple[int, int]:
        return 0, len(self.kafka.create(topic)[partition])

    async def lag(self, tps: Iterable[TopicPartition]) -> int:
        return sum(len(self.kafka.create(t)[p]) - self.positions.get((t, p), 0) for t, p in tps)

    async def close(self) -> None:
        if self._in_group:
            self._in_group = False
            self.kafka.leave(self)
        self.closed = True


class MemoryProducer:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka

    async def __aenter__(self) -> MemoryProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        pass

    async def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Delivered]:
        fut: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        fut.set_result(self.kafka.append(topic, key, value, partition, headers))
        self.kafka.grew()
        return fut

    async def produce_all(
        self, records: Sequence[tuple[str, str | bytes | None, bytes, Any]], yield_every: int = 500
    ) -> list[Delivered]:
        return [await (await self.produce(t, k, v, headers=h)) for t, k, v, h in records]

    async def send(self, topic: str, key: str | bytes | None, value: bytes) -> Delivered:
        return await (await self.produce(topic, key, value))

    async def flush(self, timeout: float = 30.0) -> None:
        pass

    async def close(self, timeout: float = 30.0) -> None:
        pass


class MemoryTransactionalProducer:
    def __init__(self, kafka: MemoryKafka, transactional_id: str) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id
        self.replaced = 0

    async def start(self, timeout: float = 30.0) -> None:
        pass

    async def commit(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[TopicPartition, OffsetCommit],
        group_metadata: Any,
        timeout: float = 5.0,
    ) -> None:
        """Append ``records`` and commit ``offsets`` together, or raise and do neither."""
        if (why := self.kafka._take(self.kafka._failing_transactions)) is not None:
            raise TransactionAbortedError(f"transaction aborted: {why}")
        if offsets:
            group_id, member = group_metadata
            stray = [tp for tp in offsets if self.kafka.owner(group_id, tp) is not member]
            if stray:
                raise TransactionAbortedError(
                    f"transaction aborted: {sorted(stray)} not assigned to this member"
                )
            for tp, c in offsets.items():
                self.kafka.commit(group_id, {tp: c.offset}, c.metadata)
        for r in records:
            self.kafka.append(r.topic, r.key, r.value, headers=r.headers)
        self.kafka.transactions += 1
        self.kafka.grew()

    async def close(self) -> None:
        pass


class MemoryAdmin:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka

    def renew(self) -> None:
        pass

    async def topics(self, timeout: float = 5.0) -> dict[str, int]:
        return {t: len(parts) for t, parts in self.kafka.topics.items()}

    async def ensure_topics(self, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
        made = [s.name for s in specs if s.name not in self.kafka.topics]
        for s in specs:
            self.kafka.create(s.name, s.partitions)
        return made

    async def group_member_count(self, group: str, timeout: float = 5.0) -> int:
        g = self.kafka.groups.get(group)
        return len(g.members) if g is not None else 0

    async def end_offsets(
        self, topic: str, partitions: int, timeout: float = 10.0
    ) -> dict[int, int]:
        parts = self.kafka.create(topic, partitions)
        return {p: len(parts[p]) for p in range(partitions)}

    async def group_lag(
        self, group: str, partitions: dict[str, int], timeout: float = 5.0
    ) -> dict[str, int]:
        lag = dict.fromkeys(partitions, 0)
        for topic, n in partitions.items():
            parts = self.kafka.create(topic, n)
            for p in range(n):
                done = self.kafka.committed(group, (topic, p)).offset or 0
                lag[topic] += max(0, len(parts[p]) - done)
        return lag
