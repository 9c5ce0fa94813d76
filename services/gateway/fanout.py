"""One consumer per gateway process, fanning ``tokenrelay.tokens`` out to the streams.

The consumer is assigned every partition (no group: each gateway reads
everything) from the live end, and reads ``read_committed`` like every other
reader of the topic. Each record is looked up by key: a record no stream
watches costs two dict lookups (and the first of each job, one decode); a
watched one is decoded once and offered to every stream of its job.

The hand-over from replay to live needs no lock: records are dispatched on the
event loop, a batch at a time, and ``position(partition)`` is the offset of the
next record the fan-out will dispatch. A stream that subscribes receives every
record of its job from that offset on; whatever lies before it, it replays
itself. No gap, no overlap.

The fan-out also keeps the last ``recent`` records of each partition, so a
stream that starts shortly before the live position (a job watched right after
it was submitted, the usual case) takes its gap from memory instead of a read.
It also remembers, for as many jobs as ``recent`` records a partition, where
each job whose first event it read (the submission's ``queued``, seq 0: no clock
decides it) has that event, and whose job it is: a stream opened for such a job
starts there with no seek, however many tokens of other jobs have gone by since
(under a flood of tokens the records themselves leave memory within a second or
two, and a seek queues behind the replay readers).

Each stream has a bounded buffer. A stream whose buffer fills is cut off (its
``cut`` future resolves), so one client that stops reading never slows the
consumer or another stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

from services.core.breakdown import Breakdown
from services.core.errors import KafkaError
from services.core.kafka import Admin, KafkaClients, Record
from services.core.metrics import STREAM_CONSUMER_LAG, STREAM_SLOW_CLIENTS_CUT
from services.gateway.stream_item import StreamItem, item_of

log = logging.getLogger(__name__)

POLL_MAX_RECORDS = 2000
LAG_EVERY_S = 2.0


BEAT_TICK_S = 0.25
"""How often the heartbeat ticker beats its next slot of streams."""


def beat_slots(heartbeat_s: float) -> int:
    """How many slots a heartbeat cycle is cut into: a tick each ``BEAT_TICK_S``."""
    return max(1, round(heartbeat_s / BEAT_TICK_S))


class Subscription:
    """One stream's view of its job's live records: a bounded buffer and a wake-up.

    Waking costs one future per wait and no timer: heartbeats come from the
    fan-out's one ticker for every stream (few objects per event also keep the
    garbage collector's pauses short).
    """

    __slots__ = (
        "_buffer",
        "_limit",
        "_quiet",
        "_waiter",
        "beat_due",
        "beat_slot",
        "closed",
        "cut",
        "job_key",
        "live",
        "live_from",
        "overflowed",
        "partition",
        "woken",
    )

    def __init__(
        self,
        job_key: bytes,
        partition: int,
        live_from: int,
        limit: int,
        cut: asyncio.Future[None],
    ) -> None:
        self.job_key = job_key
        self.partition = partition
        self.live_from = live_from
        """The offset of the first record this subscription receives."""
        self._limit = limit
        self._buffer: list[StreamItem] | None = None
        """None while empty: an idle stream keeps no empty container (a deque is 600 B)."""
        self._waiter: asyncio.Future[None] | None = None
        self._quiet = True
        self.woken = False
        """Something happened since the last ``take``: records, an overflow, a close, a beat."""
        self.beat_due = False
        self.beat_slot = 0
        """Which tick of the heartbeat cycle beats this stream (``beat_slots``)."""
        self.cut = cut
        self.live = False
        """Set once the stream has replayed what lay before ``live_from``; only then may a
        full buffer cut the client off (before, the stream replays the gap again)."""
        self.overflowed = False
        self.closed = False

    def _wake(self) -> None:
        self.woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until something happened since the last ``take``."""
        if not self.woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def offer(self, item: StreamItem) -> None:
        if self.overflowed or self.closed:
            return
        self._quiet = False
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = []
        if len(buffer) >= self._limit:
            self.overflowed = True
            self._buffer = None
            if self.live and not self.cut.done():
                STREAM_SLOW_CLIENTS_CUT.inc()
                self.cut.set_result(None)
        else:
            buffer.append(item)
        self._wake()

    def beat(self) -> None:
        """A heartbeat is due if nothing was offered since the last one."""
        if self._quiet:
            self.beat_due = True
            self._wake()
        self._quiet = True

    def take(self) -> list[StreamItem]:
        """Everything buffered, oldest first."""
        items = self._buffer or []
        self._buffer = None
        self.woken = False
        return items

    def close(self) -> None:
        """The gateway is stopping: the stream ends (its client resumes elsewhere)."""
        self.closed = True
        self._wake()


FIRST_SEQ = 0
"""The seq of a job's first event, its submission's ``queued`` (a retry's comes later)."""


@dataclass(frozen=True, slots=True)
class FirstEvent:
    """Where a job's first record is, and whose job it says it is."""

    partition: int
    offset: int
    tenant: str | None
    whole: bool
    """The record is the job's first event (its submission's ``queued``, seq 0); False for a
    job the fan-out met later in its life, or a record that is no job event."""


class Fanout:
    """The gateway's live reader of the tokens topic."""

    def __init__(
        self,
        clients: KafkaClients,
        topic: str,
        admin: Admin,
        buffer_limit: int,
        recent: int = 4096,
        heartbeat_s: float = 15.0,
    ) -> None:
        self.topic = topic
        self._heartbeat_s = heartbeat_s
        self._beat_slots = beat_slots(heartbeat_s)
        self._opened = itertools.count()
        self._ticker: asyncio.Task[None] | None = None
        self.breakdown = Breakdown()
        """Told when reading stops for good (the process's own, from ``service.create``)."""
        self._admin = admin
        self._buffer_limit = buffer_limit
        self._recent_limit = recent
        self._recent: dict[int, deque[Record]] = {}
        self._firsts: OrderedDict[bytes, FirstEvent] = OrderedDict()
        """The first record of each job seen since reading began, oldest job first; as many
        jobs as ``recent`` records a partition."""
        self._consumer = clients.consumer(f"{topic}-gateway-fanout")
        self._positions: dict[int, int] = {}
        self._stamps: dict[int, int] = {}
        """The timestamp of the last record dispatched from each partition (ms)."""
        self._subs: dict[bytes, set[Subscription]] = {}
        self._dispatched: asyncio.Future[None] | None = None
        """Resolved by the next dispatch, for whoever waits for newer records."""
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = "starting"

    @property
    def partitions(self) -> int:
        return len(self._positions)

    def position(self, partition: int) -> int:
        return self._positions[partition]

    async def start(self, timeout: float = 30.0) -> None:
        """Assign every partition at its live end and start dispatching.

        A topic created a moment ago may not be in this client's metadata yet: wait.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while self.topic not in (counts := await self._admin.topics()):
            if loop.time() > give_up:
                raise KafkaError(f"topic {self.topic} does not exist")
            await asyncio.sleep(0.2)
        ends = await self._admin.end_offsets(self.topic, counts[self.topic])
        self.assigned(ends)
        await self._consumer.start()
        await self._consumer.assign([(self.topic, p, o) for p, o in ends.items()])
        self._task = asyncio.create_task(self._run(), name="gateway-fanout")
        self._task.add_done_callback(self._ended)
        self._ticker = asyncio.create_task(self._beat(), name="gateway-heartbeat")
        self.breakdown.watch(self._ticker, "the gateway's heartbeats")
        self._error = None
        log.info("fan-out reading %s from its end (%d partitions)", self.topic, len(ends))

    def assigned(self, ends: dict[int, int]) -> None:
        """Start dispatching each partition from this offset (its end when reading starts)."""
        self._positions = dict(ends)
        self._stamps = {}
        self._recent = {p: deque(maxlen=self._recent_limit) for p in ends}
        self._firsts = OrderedDict()

    def _every_stream(self) -> list[Subscription]:
        return [sub for subs in self._subs.values() for sub in subs]

    async def end_streams(self) -> None:
        """End every stream (the server is shutting down; clients resume elsewhere)."""
        for sub in self._every_stream():
            sub.close()

    async def stop(self) -> None:
        await self.end_streams()
        tasks = [t for t in (self._task, self._ticker) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._consumer.close()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._error = f"the fan-out of {self.topic} stopped: {exc!r}"
            log.error("%s", self._error, exc_info=exc)
            self.breakdown.report(self._error)
            for sub in self._every_stream():
                sub.close()

    async def ready(self) -> str | None:
        return self._error

    def subscribe(self, job_key: bytes, partition: int, cut: asyncio.Future[None]) -> Subscription:
        sub = Subscription(job_key, partition, self._positions[partition], self._buffer_limit, cut)
        sub.beat_slot = next(self._opened) % self._beat_slots
        self._subs.setdefault(job_key, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_key]

    def recent_record(self, partition: int, offset: int) -> Record | None:
        """The record at ``offset``, if it is among the recent ones kept in memory."""
        for rec in reversed(self._recent[partition]):
            if rec.offset <= offset:
                return rec if rec.offset == offset else None
        return None

    def recent(self, partition: int, start: int, key: bytes) -> list[Record] | None:
        """The job's records from ``start`` to the live position, if memory reaches back there."""
        ring = self._recent[partition]
        if not ring or ring[0].offset > start:
            return None
        out = []
        for rec in reversed(ring):
            if rec.offset < start:
                break
            if rec.key == key:
                out.append(rec)
        out.reverse()
        return out

    def read_past(self, partition: int, ms: int) -> bool:
        """Whether the fan-out has dispatched a record of ``partition`` stamped ``ms`` or later."""
        return self._stamps.get(partition, -1) >= ms

    def first_recent(self, partition: int, key: bytes) -> FirstEvent | None:
        """Where the job's first event is, if the fan-out read it and still remembers."""
        first = self._firsts.get(key)
        if first is None or first.partition != partition or not first.whole:
            return None
        return first

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def next_dispatch(self, timeout: float) -> bool:
        """Wait until the fan-out has dispatched more records (False after ``timeout``)."""
        if self._dispatched is None or self._dispatched.done():
            self._dispatched = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._dispatched), timeout)
        except TimeoutError:
            return False
        return True

    def dispatch(self, records: list[Record]) -> None:
        """Offer each record to the streams of its job; synchronous, so atomic for subscribers."""
        if records and self._dispatched is not None and not self._dispatched.done():
            self._dispatched.set_result(None)
        subs_of = self._subs
        positions = self._positions
        recent = self._recent
        firsts = self._firsts
        stamps = self._stamps
        for rec in records:
            positions[rec.partition] = rec.offset + 1
            stamps[rec.partition] = rec.timestamp_ms
            recent[rec.partition].append(rec)
            if rec.key is None or rec.value is None:
                continue
            if rec.key not in firsts:
                self._remember_first(rec)
            subs = subs_of.get(rec.key)
            if not subs:
                continue
            item = item_of(rec)
            if item is None:
                continue
            for sub in tuple(subs):
                sub.offer(item)

    def _remember_first(self, rec: Record) -> None:
        item = item_of(rec)
        whole = item is not None and item.type == "queued" and item.seq == FIRST_SEQ
        self._firsts[rec.key or b""] = FirstEvent(
            rec.partition, rec.offset, None if item is None else item.tenant, whole
        )
        if len(self._firsts) > max(1, self._recent_limit * len(self._recent)):
            self._firsts.popitem(last=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_lag = loop.time()
        while True:
            try:
                records = await self._consumer.poll(POLL_MAX_RECORDS, 0.5)
            except KafkaError as exc:
                if self._error is None:
                    log.warning("fan-out cannot read %s: %s", self.topic, exc)
                self._error = f"cannot read {self.topic}: {exc}"
                await asyncio.sleep(1.0)
                continue
            if self._error is not None:
                log.info("fan-out reads %s again", self.topic)
                self._error = None
            self.dispatch(records)
            if loop.time() >= next_lag:
                next_lag = loop.time() + LAG_EVERY_S
                await self._measure_lag()

    async def _beat(self) -> None:
        """Every ``heartbeat_s``, wake the streams that had nothing to send meanwhile: one
        slot of them per tick, so the beats of thousands of idle streams never come at once.

        Waking all at once wrote 10,000 heartbeats in one turn of the loop, and every
        live token waited behind them (``bench fanout --idle 10000``: p99 107-130 ms).
        """
        slots = self._beat_slots
        tick = self._heartbeat_s / slots
        slot = 0
        while True:
            await asyncio.sleep(tick)
            self.beat(slot)
            slot = (slot + 1) % slots

    def beat(self, slot: int) -> None:
        """One tick of the heartbeat cycle: beat the streams of ``slot``."""
        for sub in self._every_stream():
            if sub.beat_slot == slot:
                sub.beat()

    async def _measure_lag(self) -> None:
        STREAM_CONSUMER_LAG.set(await self._consumer.lag((self.topic, p) for p in self._positions))
