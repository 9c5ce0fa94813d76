"""One consumer per gateway process, fanning ``tokenrelay.tokens`` out to the streams.

The consumer is assigned every partition (no group: each gateway reads
everything) from the live end, and reads ``read_committed`` like every other
reader of the topic. Each record is looked up by key: a record no stream
watches costs a dict lookup; a watched one is decoded once and offered to
every stream of its job.

The hand-over from replay to live needs no lock: records are dispatched on the
event loop, a batch at a time, and ``position(partition)`` is the offset of the
next record the fan-out will dispatch. A stream that subscribes receives every
record of its job from that offset on; whatever lies before it, it replays
itself. No gap, no overlap.

Each stream has a bounded buffer. A stream whose buffer fills is cut off (its
``cut`` future resolves), so one client that stops reading never slows the
consumer or another stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from services.core.errors import DecodeError, KafkaError
from services.core.kafka import Admin, Consumer, Record
from services.core.metrics import POISON_RECORDS, STREAM_CONSUMER_LAG, STREAM_SLOW_CLIENTS_CUT
from services.gateway.stream_item import StreamItem, decode_item

log = logging.getLogger(__name__)

POLL_MAX_RECORDS = 2000
LAG_EVERY_S = 2.0


class Subscription:
    """One stream's view of its job's live records: a bounded buffer and a wake-up."""

    __slots__ = (
        "_buffer",
        "_limit",
        "closed",
        "cut",
        "job_key",
        "live",
        "live_from",
        "overflowed",
        "partition",
        "wake",
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
        self._buffer: deque[StreamItem] = deque()
        self.wake = asyncio.Event()
        self.cut = cut
        self.live = False
        """Set once the stream has replayed what lay before ``live_from``; only then may a
        full buffer cut the client off (before, the stream replays the gap again)."""
        self.overflowed = False
        self.closed = False

    def offer(self, item: StreamItem) -> None:
        if self.overflowed or self.closed:
            return
        if len(self._buffer) >= self._limit:
            self.overflowed = True
            self._buffer.clear()
            if self.live and not self.cut.done():
                STREAM_SLOW_CLIENTS_CUT.inc()
                self.cut.set_result(None)
        else:
            self._buffer.append(item)
        self.wake.set()

    def take(self) -> list[StreamItem]:
        """Everything buffered, oldest first."""
        items = list(self._buffer)
        self._buffer.clear()
        self.wake.clear()
        return items

    def close(self) -> None:
        """The gateway is stopping: the stream ends (its client resumes elsewhere)."""
        self.closed = True
        self.wake.set()


class Fanout:
    """The gateway's live reader of the tokens topic."""

    def __init__(self, bootstrap: str, topic: str, admin: Admin, buffer_limit: int) -> None:
        self.topic = topic
        self._admin = admin
        self._buffer_limit = buffer_limit
        self._consumer = Consumer(bootstrap, f"{topic}-gateway-fanout")
        self._positions: dict[int, int] = {}
        self._subs: dict[bytes, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = "starting"

    @property
    def partitions(self) -> int:
        return len(self._positions)

    def position(self, partition: int) -> int:
        return self._positions[partition]

    async def start(self) -> None:
        """Assign every partition at its live end and start dispatching."""
        counts = await self._admin.topics()
        if self.topic not in counts:
            raise KafkaError(f"topic {self.topic} does not exist")
        ends = await self._admin.end_offsets(self.topic, counts[self.topic])
        self._positions = dict(ends)
        await self._consumer.start()
        await self._consumer.assign([(self.topic, p, o) for p, o in ends.items()])
        self._task = asyncio.create_task(self._run(), name="gateway-fanout")
        self._error = None
        log.info("fan-out reading %s from its end (%d partitions)", self.topic, len(ends))

    async def end_streams(self) -> None:
        """End every stream (the server is shutting down; clients resume elsewhere)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.close()

    async def stop(self) -> None:
        await self.end_streams()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.close()

    async def ready(self) -> str | None:
        return self._error

    def subscribe(self, job_key: bytes, partition: int, cut: asyncio.Future[None]) -> Subscription:
        sub = Subscription(job_key, partition, self._positions[partition], self._buffer_limit, cut)
        self._subs.setdefault(job_key, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_key]

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def dispatch(self, records: list[Record]) -> None:
        """Offer each record to the streams of its job; synchronous, so atomic for subscribers."""
        subs_of = self._subs
        positions = self._positions
        for rec in records:
            positions[rec.partition] = rec.offset + 1
            if rec.key is None or rec.value is None:
                continue
            subs = subs_of.get(rec.key)
            if not subs:
                continue
            try:
                item = decode_item(rec.offset, rec.value)
            except DecodeError as exc:
                POISON_RECORDS.labels(self.topic).inc()
                log.error("skipping undecodable record at %s: %s", rec.where(), exc)
                continue
            for sub in tuple(subs):
                sub.offer(item)

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

    async def _measure_lag(self) -> None:
        ends = await self._consumer.fetched_ends((self.topic, p) for p in self._positions)
        STREAM_CONSUMER_LAG.set(
            sum(max(0, end - self._positions[p]) for (_, p), end in ends.items() if end >= 0)
        )
