"""What one stream sends: where it starts, then its job's events until the terminal one.

Where a stream starts:

* with a cursor (``Last-Event-ID``): after that offset. The event at the cursor
  is read first: it proves the job exists, names its tenant and seeds the
  duplicate filter. No job state is needed, so resuming works while the
  aggregator is away.
* without: the job state's ``attempt_start_offset`` (the submission's ``queued``
  event, or the current attempt's ``started`` once the job was retried); if the
  aggregator has no state yet (or is away), a bounded seek to the job's first event.

Then ``events`` takes what lies before the fan-out's position from the
fan-out's memory of recent records or, further back, with a replay reader, and
hands over to the live records with nothing missed or repeated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from schemas.state import JobState
from services.core.auth import Principal
from services.core.errors import ApiError, TokenrelayError
from services.core.ids import job_id_ms
from services.core.job_log import SEEK_MARGIN_MS
from services.core.partitioner import partition_for
from services.core.state_client import StateClient, StateUnavailableError
from services.gateway.event_filter import EventFilter
from services.gateway.fanout import Fanout, FirstEvent, Subscription
from services.gateway.replay import ReplayReaders
from services.gateway.stream_item import StreamItem, item_of

log = logging.getLogger(__name__)


STATE_RETRY_S = 5.0
YOUNG_JOB_MS = 2_000
"""A job whose id is younger than this may not have reached the fan-out yet."""
CATCH_UP_S = 2.0
"""How long a stream of a young job waits at most for the fan-out to read past the job's
making before it seeks instead (it seeks at once when the fan-out has read past it)."""


class SlowClientError(TokenrelayError):
    """The stream's buffer filled while its client was not reading: it is cut off."""


class JobEndedError(TokenrelayError):
    """The cursor is the job's terminal event: there is nothing more to send."""


@dataclass(frozen=True, slots=True)
class Plan:
    job_id: str
    partition: int
    start: int
    """The offset from which the stream reads."""
    after: int | None
    """The client's cursor, if it sent one."""
    seed: StreamItem | None
    """The event at the cursor."""


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no job {job_id}", "job_id")


class Watches:
    """Plans streams and runs them; one per gateway process."""

    def __init__(
        self,
        fanout: Fanout,
        replays: ReplayReaders,
        state: StateClient,
    ) -> None:
        self.fanout = fanout
        self.replays = replays
        self._state = state
        self._state_retry_at = 0.0

    async def plan(self, job_id: str, who: Principal, after: int | None) -> Plan:
        """Where the stream of ``job_id`` starts for ``who``; 404 unless ``who`` may read it."""
        partitions = self.fanout.partitions
        if after is not None:
            return await self._resume(job_id, who, after, partitions)
        state = await self._job_state(job_id)
        if state is not None:
            if not who.may_read(state.tenant):
                raise _not_found(job_id)
            if state.partition is not None and state.attempt_start_offset is not None:
                return Plan(job_id, state.partition, state.attempt_start_offset, None, None)
        first = self._first_recent(job_id, partitions) or await self._first_soon(job_id, partitions)
        if first is not None:
            partition, item = first
            if item.tenant is None or not who.may_read(item.tenant):
                raise _not_found(job_id)
            return Plan(job_id, partition, item.offset, None, None)
        located = await self.replays.locate(partitions, job_id)
        if located is None or not who.may_read(located.first.tenant):
            raise _not_found(job_id)
        return Plan(job_id, located.partition, located.first_offset, None, None)

    def _first_recent(self, job_id: str, partitions: int) -> tuple[int, FirstEvent] | None:
        """Where the job's first event is, from the fan-out's memory, if it is there."""
        partition = partition_for(job_id, partitions)
        first = self.fanout.first_recent(partition, job_id.encode())
        return None if first is None else (partition, first)

    async def _first_soon(self, job_id: str, partitions: int) -> tuple[int, FirstEvent] | None:
        """The first event of a job submitted a moment ago, once the fan-out has read it.

        A client that opens the stream right after its 202 usually comes before the
        fan-out has dispatched the job's ``queued`` event (a few ms behind; under load,
        hundreds). Waiting for it costs those ms; a seek instead queues behind the
        replay readers, which 100 streams opening at once made 0.5-1.2 s (``tokenrelay
        bench steady``). So the stream waits until the fan-out has read past the time
        the job was made on its partition (its first record would be in memory by then)
        or ``CATCH_UP_S`` has gone by, and only then seeks.
        """
        ms = job_id_ms(job_id)
        loop = asyncio.get_running_loop()
        if ms is None or ms < time.time() * 1000 - YOUNG_JOB_MS:
            return None
        partition = partition_for(job_id, partitions)
        deadline = loop.time() + CATCH_UP_S
        while (left := deadline - loop.time()) > 0:
            past = self.fanout.read_past(partition, ms + SEEK_MARGIN_MS)
            first = self._first_recent(job_id, partitions)
            if first is not None or past:
                return first
            if not await self.fanout.next_dispatch(left):
                return None
        return None

    async def _resume(self, job_id: str, who: Principal, after: int, partitions: int) -> Plan:
        partition = partition_for(job_id, partitions)
        key = job_id.encode()
        rec = self.fanout.recent_record(partition, after)
        if rec is not None:
            seed = item_of(rec) if rec.key == key else None
        else:
            seed = await self.replays.event_at(partition, after, key)
        if seed is None:
            raise ApiError(
                409,
                "unknown_event",
                f"Last-Event-ID {after} is not an event of job {job_id}: "
                "resume from an id this stream sent, or leave it out",
                "Last-Event-ID",
            )
        if seed.tenant is None or not who.may_read(seed.tenant):
            raise _not_found(job_id)
        if seed.terminal:
            raise JobEndedError
        return Plan(job_id, partition, after + 1, after, seed)

    async def _job_state(self, job_id: str) -> JobState | None:
        """The aggregator's state of the job, or None if it has none or is away.

        Once it failed to answer, streams start by a seek for ``STATE_RETRY_S``
        without asking again, so a storm of reconnects does not wait on it.
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._state_retry_at:
            return None
        try:
            state = (await self._state.lookup(job_id)).state
        except StateUnavailableError as exc:
            if self._state_retry_at == 0.0:
                log.warning("job state unavailable, streams start by a seek: %s", exc)
            self._state_retry_at = loop.time() + STATE_RETRY_S
            return None
        if self._state_retry_at:
            log.info("job state available again")
            self._state_retry_at = 0.0
        return state

    async def events(
        self, plan: Plan, cut: asyncio.Future[None]
    ) -> AsyncGenerator[list[StreamItem], None]:
        """Batches of events to send, oldest first; an empty batch when a heartbeat is due.

        Ends after the job's terminal event, or when the gateway stops. When the live
        buffer overflows, ``cut`` resolves (the caller may be stuck in a write and
        must abort it) and the generator raises ``SlowClientError``.
        """
        flt = EventFilter(plan.after)
        if plan.seed is not None:
            flt.seed(plan.seed)
        sub, batch = await self._caught_up(plan, flt, cut)
        try:
            if batch:
                yield batch
            if flt.ended:
                return
            sub.live = True
            while True:
                batch = []  # an idle stream keeps none of what it sent
                await sub.wait()
                if sub.overflowed:
                    raise SlowClientError
                batch = flt.admit(sub.take())
                if batch:
                    yield batch
                elif sub.beat_due:
                    sub.beat_due = False
                    yield []
                if flt.ended or sub.closed:
                    return
        finally:
            self.fanout.unsubscribe(sub)

    async def _caught_up(
        self, plan: Plan, flt: EventFilter, cut: asyncio.Future[None]
    ) -> tuple[Subscription, list[StreamItem]]:
        """A live subscription, and the job's events before its first live record.

        If the subscription's buffer fills while the gap is read (a long replay),
        the gap up to the new position is read again rather than the client cut off.
        """
        key = plan.job_id.encode()
        start, replayed = plan.start, []
        while True:
            sub = self.fanout.subscribe(key, plan.partition, cut)
            try:
                if start < sub.live_from:
                    recent = self.fanout.recent(plan.partition, start, key)
                    if recent is not None:
                        items = [i for i in map(item_of, recent) if i is not None]
                    else:
                        items = await self.replays.read(plan.partition, start, sub.live_from, key)
                    replayed += flt.admit(items)
            except BaseException:
                self.fanout.unsubscribe(sub)
                raise
            if not sub.overflowed or flt.ended:
                return sub, replayed
            self.fanout.unsubscribe(sub)
            start = sub.live_from
