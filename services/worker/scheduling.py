"""Which fetched job runs next, and which priority topics may fetch more. Pure; no Kafka here.

Higher priorities run first (urgent > high > normal > low). A job that has
waited longer than ``aging_s`` since it was queued counts as urgent, so a low
job still starts within a bound under a steady stream of higher ones.

Fetching follows the same order. A topic may fetch while fewer than ``limit``
fetched-but-not-started jobs are at least as important as it — so lows stop
being fetched once the buffer holds enough work that outranks them, while an
urgent job is still fetched the moment it lands. Every priority may hold one
job in the buffer whatever the rest, which is how an old low job gets seen,
ages, and runs.

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


@dataclass(order=True)
class _Entry(Generic[T]):
    since_us: int
    order: int
    priority: Priority = field(compare=False)
    item: T = field(compare=False)


class ReadyQueue(Generic[T]):
    """Fetched jobs waiting for a free slot, one FIFO per priority."""

    def __init__(self, aging_s: float) -> None:
        self.aging_us = int(aging_s * 1_000_000)
        self._queues: dict[Priority, list[_Entry[T]]] = {p: [] for p in Priority}
        self._order = itertools.count()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def push(self, item: T, priority: Priority, since_us: int) -> None:
        heapq.heappush(self._queues[priority], _Entry(since_us, next(self._order), priority, item))

    def pop(self, now_us: int) -> T | None:
        """The next job to start: the oldest aged one if any, else the most important, FIFO."""
        heads = [q[0] for q in self._queues.values() if q]
        if not heads:
            return None
        aged = [e for e in heads if now_us - e.since_us >= self.aging_us]
        best = min(aged) if aged else min(heads, key=lambda e: (RANK[e.priority], e))
        return heapq.heappop(self._queues[best.priority]).item

    def count(self, priority: Priority) -> int:
        return len(self._queues[priority])

    def at_least(self, priority: Priority) -> int:
        """Waiting jobs as important as ``priority`` or more."""
        return sum(len(q) for p, q in self._queues.items() if RANK[p] <= RANK[priority])

    def fetchable(self, limit: int) -> set[Priority]:
        """Priorities whose topics may fetch now."""
        return {p for p in Priority if self.at_least(p) < limit or self.count(p) == 0}

    def discard(self, drop: Callable[[T], bool]) -> list[T]:
        """Remove the jobs ``drop`` picks; they are returned, most important first."""
        dropped: list[T] = []
        for p, q in self._queues.items():
            keep: list[_Entry[T]] = []
            for e in sorted(q):
                if drop(e.item):
                    dropped.append(e.item)
                else:
                    keep.append(e)
            self._queues[p] = keep
            heapq.heapify(keep)
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
