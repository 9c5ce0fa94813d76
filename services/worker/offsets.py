"""Which offsets a worker may commit when jobs finish out of order.

Per partition, the committed offset is the lowest offset whose job is not
finished yet (or one past the highest seen when none is running), so a
crash redelivers every unfinished job and never skips one.
"""

from __future__ import annotations

TopicPartition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._running: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._running.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        running = self._running.get(tp)
        if running is not None:
            running.discard(offset)

    def in_flight(self) -> int:
        return sum(len(s) for s in self._running.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit now: only partitions whose safe offset moved since the last call."""
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self._next.items():
            running = self._running.get(tp)
            safe = min(running) if running else nxt
            if self._committed.get(tp, -1) < safe:
                out[tp] = safe
        return out

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, off in offsets.items():
            self._committed[tp] = max(self._committed.get(tp, -1), off)

    def forget(self, tps: list[TopicPartition]) -> None:
        """Drop partitions this worker no longer owns."""
        for tp in tps:
            self._running.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
