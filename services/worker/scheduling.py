"""Which fetched job runs next, and which priority topics may fetch more. Pure; no Kafka here.

Higher priorities run first (urgent > high > normal > low). Within a priority
the tenants share the slots by weight: each tenant has its own FIFO, and the
next job comes from the tenant with the smallest virtual time (start-time fair
queuing). Starting a job advances its tenant's virtual time by ``1/weight``; a
tenant that becomes active again (or was held back by its concurrency cap)
starts at the priority's current virtual time, so idling earns no credit and
nobody gets a burst. A tenant at its cap is skipped and the others run.

A priority whose oldest startable job has waited longer than ``aging_s``
since it was queued counts as urgent: the priority with the oldest such job
goes first, and inside it the tenants still take turns, so every tenant's
oldest job starts within a bound under a steady stream of higher work.

Fetching follows the same order. A topic may fetch while fewer than ``limit``
fetched-but-not-started jobs are at least as important as it — so lows stop
being fetched once the buffer holds enough work that outranks them, while an
urgent job is still fetched the moment it lands. Every priority may hold one
job in the buffer whatever the rest, which is how an old low job gets seen,
ages, and runs. Beyond that, a priority may *read ahead* up to ``readahead``
buffered jobs of its own while fewer than ``limit`` more important jobs wait:
fairness can only choose among jobs it has fetched, and tenant B's job may sit
behind thousands of tenant A's on the same partitions. Buffered lows never
count against a higher priority's fetching, so they hold nothing back.

What read-ahead costs: each buffered job is its decoded command with its whole
prompt, about 2.7 KB plus the prompt (2000 jobs with 2 KB prompts: about 10 MB;
a prompt may be up to 8 MiB, so big-prompt fleets want a lower bound), and one
open offset in the ledger. Each priority reads ahead on its own, so the buffer
holds at most about ``4 * readahead`` jobs (each priority filled in turn)
plus one poll's worth; the offset ledger's limit per partition
(``offsets.MAX_OPEN_ABOVE_LOW``) binds first with few partitions.

Jobs of a paused batch wait apart, in ``HeldJobs``, until the batch resumes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.jobs import Priority

T = TypeVar("T")

RANK = {p: i for i, p in enumerate(Priority)}
"""0 is the most important (urgent)."""

IDLE_TAGS_KEPT = 64
"""Idle tenants' virtual times kept beyond the active ones before the stale are forgotten."""


def _any_tenant(_tenant: str) -> bool:
    return True


def _equal_weight(_tenant: str) -> float:
    return 1.0


@dataclass(order=True)
class _Entry(Generic[T]):
    since_us: int
    order: int
    tenant: str = field(compare=False)
    item: T = field(compare=False)


class _Lane(Generic[T]):
    """One priority: a FIFO per tenant (by queue time) and the tenants' virtual times."""

    def __init__(self) -> None:
        self.fifos: dict[str, list[_Entry[T]]] = {}
        self.tags: dict[str, float] = {}
        """A tenant's virtual time: its next start's tag, unless the lane's clock is later."""
        self.clock = 0.0
        """The tag of the latest start: where a tenant that comes back begins."""
        self.size = 0

    def push(self, entry: _Entry[T]) -> None:
        heapq.heappush(self.fifos.setdefault(entry.tenant, []), entry)
        self.size += 1

    def startable(self, may_start: Callable[[str], bool]) -> list[str]:
        return [t for t in self.fifos if may_start(t)]

    def startable_size(self, may_start: Callable[[str], bool]) -> int:
        """Jobs here of tenants that may start one now (not at their cap)."""
        return sum(len(fifo) for t, fifo in self.fifos.items() if may_start(t))

    def oldest(self, tenants: list[str]) -> _Entry[T]:
        return min(self.fifos[t][0] for t in tenants)

    def take(self, tenants: list[str], weight: Callable[[str], float]) -> T:
        """Start the head job of the tenant with the smallest virtual time (ties: the older job)."""
        clock = self.clock
        tenant = min(tenants, key=lambda t: (max(self.tags.get(t, clock), clock), self.fifos[t][0]))
        start = max(self.tags.get(tenant, clock), clock)
        self.clock = start
        self.tags[tenant] = start + 1.0 / weight(tenant)
        fifo = self.fifos[tenant]
        entry = heapq.heappop(fifo)
        self.size -= 1
        if not fifo:
            del self.fifos[tenant]
            self._forget_idle()
        return entry.item

    def _forget_idle(self) -> None:
        """A tenant whose tag the clock has passed would restart at the clock anyway."""
        if len(self.tags) > len(self.fifos) + IDLE_TAGS_KEPT:
            self.tags = {t: v for t, v in self.tags.items() if t in self.fifos or v > self.clock}

    def entries(self) -> list[_Entry[T]]:
        return sorted(e for fifo in self.fifos.values() for e in fifo)

    def refill(self, entries: list[_Entry[T]]) -> None:
        self.fifos = {}
        self.size = 0
        for e in entries:
            self.push(e)


class ReadyQueue(Generic[T]):
    """Fetched jobs waiting for a free slot: per priority, one FIFO per tenant."""

    def __init__(self, aging_s: float) -> None:
        self.aging_us = int(aging_s * 1_000_000)
        self._lanes: dict[Priority, _Lane[T]] = {p: _Lane() for p in Priority}
        self._order = itertools.count()
        self._aged_turn = True
        """Whether an aged job beats more important fresh work at the next such choice."""

    def __len__(self) -> int:
        return sum(lane.size for lane in self._lanes.values())

    def push(self, item: T, priority: Priority, since_us: int, tenant: str = "") -> None:
        self._lanes[priority].push(_Entry(since_us, next(self._order), tenant, item))

    def pop(
        self,
        now_us: int,
        *,
        may_start: Callable[[str], bool] = _any_tenant,
        weight: Callable[[str], float] = _equal_weight,
    ) -> T | None:
        """The next job to start, of a tenant ``may_start`` allows (one below its cap).

        The priority: the one whose oldest startable job is the oldest aged one if
        any, else the most important with a startable job. Within it, the tenant
        with the smallest virtual time, ``weight`` read now (weights change at run time).
        """
        candidates = []
        for lane in self._lanes.values():
            if lane.size and (tenants := lane.startable(may_start)):
                candidates.append((lane, tenants, lane.oldest(tenants)))
        if not candidates:
            return None
        aged = [c for c in candidates if now_us - c[2].since_us >= self.aging_us]
        lane, tenants, _ = candidates[0]
        if aged:
            oldest = min(aged, key=lambda c: c[2])
            if oldest[0] is lane:
                lane, tenants, _ = oldest
            else:
                # Aged work and more important fresh work take turns: read-ahead can buffer
                # thousands of aged lows, which must not hold an urgent job back for as long.
                if self._aged_turn:
                    lane, tenants, _ = oldest
                self._aged_turn = not self._aged_turn
        return lane.take(tenants, weight)

    def count(self, priority: Priority, may_start: Callable[[str], bool] = _any_tenant) -> int:
        """Waiting jobs of ``priority`` (of tenants ``may_start`` allows)."""
        lane = self._lanes[priority]
        return lane.size if may_start is _any_tenant else lane.startable_size(may_start)

    def at_least(self, priority: Priority, may_start: Callable[[str], bool] = _any_tenant) -> int:
        """Waiting jobs as important as ``priority`` or more (of tenants ``may_start`` allows)."""
        return sum(self.count(p, may_start) for p in Priority if RANK[p] <= RANK[priority])

    def room(
        self,
        priority: Priority,
        limit: int,
        readahead: int = 0,
        may_start: Callable[[str], bool] = _any_tenant,
    ) -> int:
        """How many more jobs of ``priority`` may be fetched now (see the module docstring).

        Jobs of tenants at their cap do not count: they cannot start, and other tenants'
        jobs behind them must still be fetched (the offset ledger bounds how many are held).
        """
        mine = self.count(priority, may_start)
        better = self.at_least(priority, may_start) - mine
        within_limit = limit - better - mine
        ahead = readahead - mine if better < limit else 0
        return max(within_limit, ahead, 1 if mine == 0 else 0)

    def fetchable(
        self, limit: int, readahead: int = 0, may_start: Callable[[str], bool] = _any_tenant
    ) -> set[Priority]:
        """Priorities whose topics may fetch now."""
        return {p for p in Priority if self.room(p, limit, readahead, may_start) > 0}

    def fetch_room(
        self, limit: int, readahead: int = 0, may_start: Callable[[str], bool] = _any_tenant
    ) -> int:
        """The most records one poll should bring: the largest room of any priority."""
        return max(self.room(p, limit, readahead, may_start) for p in Priority)

    def discard(self, drop: Callable[[T], bool]) -> list[T]:
        """Remove the jobs ``drop`` picks; they are returned, most important first, then
        oldest first. Tenants keep their virtual times."""
        dropped: list[T] = []
        for lane in self._lanes.values():
            keep: list[_Entry[T]] = []
            for e in lane.entries():
                if drop(e.item):
                    dropped.append(e.item)
                else:
                    keep.append(e)
            lane.refill(keep)
        return dropped


class DelayQueue(Generic[T]):
    """Retries waiting for their ``not_before``; they hold no slot while they wait."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, not_before_us: int) -> None:
        heapq.heappush(self._heap, (not_before_us, next(self._order), item))

    def due(self, now_us: int) -> list[T]:
        out: list[T] = []
        while self._heap and self._heap[0][0] <= now_us:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def discard(self, drop: Callable[[T], bool]) -> list[T]:
        """Remove the jobs ``drop`` picks; they are returned, soonest due first."""
        dropped: list[T] = []
        keep: list[tuple[int, int, T]] = []
        for entry in sorted(self._heap):
            if drop(entry[2]):
                dropped.append(entry[2])
            else:
                keep.append(entry)
        self._heap = keep
        return dropped


class HeldJobs(Generic[T]):
    """Fetched jobs of paused batches, per batch, in the order they were held.

    They hold no slot and are not in the ready queue (so they do not stop other
    topics from fetching); their offsets stay open in the ledger until they run.
    """

    def __init__(self) -> None:
        self._by_batch: dict[str, list[T]] = {}

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_batch.values())

    def hold(self, batch_id: str, item: T) -> None:
        self._by_batch.setdefault(batch_id, []).append(item)

    def release(self, still_held: Callable[[T], bool]) -> list[T]:
        """Remove and return every job that is no longer held, in the order they were held."""
        out: list[T] = []
        for batch_id, items in list(self._by_batch.items()):
            keep: list[T] = []
            for item in items:
                (keep if still_held(item) else out).append(item)
            if keep:
                self._by_batch[batch_id] = keep
            else:
                del self._by_batch[batch_id]
        return out

    def discard(self, drop: Callable[[T], bool]) -> None:
        """Forget jobs without releasing them (their partition was revoked)."""
        self.release(lambda item: not drop(item))
