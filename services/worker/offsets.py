"""Which offset a worker may commit when jobs finish out of order, and what it must remember.

Per partition the committed offset is the lowest offset whose job is not
finished (or one past the highest fetched when none is open), so a crash
redelivers every unfinished job and skips none. Two facts above that offset
travel with the commit, in its metadata string (the approach of Confluent's
Parallel Consumer):

* ``f`` — offsets whose job already ended: the next owner skips them, so a job
  ends once even when a lower job was still running at the crash;
* ``s`` — how many times a job was started: the next owner runs it as a new
  attempt, so its events never collide with the lost attempt's ``(attempt, seq)``.

Metadata: ``v1;f=<ranges>;s=<offset>:<count>,…``, offsets relative to the
committed offset, ranges as ``a`` or ``a-b``. Pure; no Kafka here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.kafka import OffsetCommit, TopicPartition

MAX_OPEN_ABOVE_LOW = 200
"""Tracked offsets above the low mark before a partition stops taking records (metadata size)."""


def _ranges(offsets: list[int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(offsets):
        j = i
        while j + 1 < len(offsets) and offsets[j + 1] == offsets[j] + 1:
            j += 1
        out.append(str(offsets[i]) if i == j else f"{offsets[i]}-{offsets[j]}")
        i = j + 1
    return ",".join(out)


def encode_metadata(base: int, finished: set[int], starts: dict[int, int]) -> str:
    f = _ranges(sorted(o - base for o in finished if o >= base))
    s = ",".join(f"{o - base}:{n}" for o, n in sorted(starts.items()) if o >= base and n > 0)
    return f"v1;f={f};s={s}" if f or s else ""


def decode_metadata(base: int, text: str) -> tuple[set[int], dict[int, int]]:
    """(finished offsets, start counts) from ``encode_metadata``; empty for foreign metadata."""
    finished: set[int] = set()
    starts: dict[int, int] = {}
    parts = text.split(";")
    if parts[0] != "v1":
        return finished, starts
    for part in parts[1:]:
        name, _, body = part.partition("=")
        for item in filter(None, body.split(",")):
            if name == "f":
                lo, _, hi = item.partition("-")
                finished.update(range(base + int(lo), base + int(hi or lo) + 1))
            elif name == "s":
                off, _, n = item.partition(":")
                starts[base + int(off)] = int(n)
    return finished, starts


@dataclass
class PartitionLedger:
    """One owned partition: what was fetched, started and finished since the committed offset."""

    low: int | None
    finished: set[int] = field(default_factory=set)
    starts: dict[int, int] = field(default_factory=dict)
    open: set[int] = field(default_factory=set)
    next: int | None = None

    def safe_offset(self, extra_finished: frozenset[int] = frozenset()) -> int | None:
        pending = self.open - extra_finished
        if pending:
            return min(pending)
        return self.next if self.next is not None else self.low

    def commit(self, extra_finished: frozenset[int] = frozenset()) -> OffsetCommit | None:
        base = self.safe_offset(extra_finished)
        if base is None:
            return None
        done = self.finished | extra_finished  # disjoint from ``open`` otherwise
        return OffsetCommit(base, encode_metadata(base, done, self.starts))


class OffsetLedger:
    """Every partition this worker owns. Offsets are ``(topic, partition)`` → ledger."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, PartitionLedger] = {}
        self._dirty: set[TopicPartition] = set()

    def assign(self, tp: TopicPartition, committed: int | None, metadata: str) -> None:
        finished: set[int] = set()
        starts: dict[int, int] = {}
        if committed is not None:
            finished, starts = decode_metadata(committed, metadata)
        self._parts[tp] = PartitionLedger(committed, finished, starts)

    def revoke(self, tp: TopicPartition) -> None:
        self._parts.pop(tp, None)
        self._dirty.discard(tp)

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._parts

    def owned(self) -> set[TopicPartition]:
        return set(self._parts)

    def fetched(self, tp: TopicPartition, offset: int) -> bool:
        """Note a fetched record; False when its job already ended (skip it)."""
        part = self._parts.setdefault(tp, PartitionLedger(None))
        part.next = max(part.next if part.next is not None else 0, offset + 1)
        if offset in part.finished:
            self._dirty.add(tp)
            return False
        part.open.add(offset)
        return True

    def prior_starts(self, tp: TopicPartition, offset: int) -> int:
        part = self._parts.get(tp)
        return part.starts.get(offset, 0) if part else 0

    def started(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is not None:
            part.starts[offset] = part.starts.get(offset, 0) + 1
            self._dirty.add(tp)

    def crowded(self, tp: TopicPartition) -> bool:
        """Too many offsets above the low mark to describe in the commit metadata."""
        part = self._parts.get(tp)
        return part is not None and len(part.open) + len(part.finished) > MAX_OPEN_ABOVE_LOW

    def take_commit(
        self, finishing: dict[TopicPartition, set[int]] | None = None
    ) -> dict[TopicPartition, OffsetCommit]:
        """What to commit now: every changed partition, as if ``finishing`` had already ended.

        The partitions count as clean from here on; ``commit_failed`` marks them again.
        """
        finishing = finishing or {}
        out: dict[TopicPartition, OffsetCommit] = {}
        for tp in self._dirty | finishing.keys():
            part = self._parts.get(tp)
            if part is None:
                continue
            c = part.commit(frozenset(finishing.get(tp, ())))
            if c is not None:
                out[tp] = c
        self._dirty.clear()
        return out

    def commit_failed(self, offsets: dict[TopicPartition, OffsetCommit]) -> None:
        self._dirty.update(tp for tp in offsets if tp in self._parts)

    def committed(
        self,
        offsets: dict[TopicPartition, OffsetCommit],
        finishing: dict[TopicPartition, set[int]] | None = None,
    ) -> None:
        """The commit succeeded: the finishing jobs ended; forget what lies below each low mark."""
        for tp, done in (finishing or {}).items():
            part = self._parts.get(tp)
            if part is not None:
                part.finished |= done & part.open
                part.open -= done
        for tp, c in offsets.items():
            part = self._parts.get(tp)
            if part is None:
                continue
            part.low = c.offset
            part.finished = {o for o in part.finished if o >= c.offset}
            part.starts = {o: n for o, n in part.starts.items() if o >= c.offset}
