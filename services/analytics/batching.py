"""Per-partition batches of the sink, and the intent that makes a batch's insert exactly-once.

Order of one batch (``sink.py`` does the I/O):

1. commit the batch's start offset with the note ``sink/1 through=<last offset>``
   (the intent: these records are being inserted under this batch's token);
2. insert its rows into ClickHouse under the deduplication token
   ``<topic>:<partition>:<start>-<last>``;
3. commit ``last + 1`` with an empty note.

After a crash anywhere in between, the group's committed offset is the batch's
start and its note names the batch's last offset: the restarted sink gathers
exactly the same records into one batch and inserts them under the same token.
ClickHouse skips the blocks it stored before and fills in only what it had
missed (a materialized view the crash cut off), so nothing is lost or counted
twice. A batch is cut when it holds ``max_records`` records or its oldest
record waited ``max_age_s``, never while it replays an intent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.core.kafka import Committed, Record

_INTENT = re.compile(r"^sink/1 through=(\d+)$")


def intent_note(last: int) -> str:
    return f"sink/1 through={last}"


def parse_intent(committed: Committed) -> int | None:
    """The last offset of a batch that was being inserted when the note was committed."""
    m = _INTENT.match(committed.metadata)
    if m is None or committed.offset is None:
        return None
    last = int(m.group(1))
    return last if last >= committed.offset else None


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive records of one partition, from ``start`` (a committed position) to ``last``."""

    topic: str
    partition: int
    start: int
    last: int
    records: list[Record]
    replay: bool
    """True when it repeats a batch a previous run was inserting."""

    @property
    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.start}-{self.last}"

    @property
    def next_offset(self) -> int:
        return self.last + 1


@dataclass(slots=True)
class PartitionBuffer:
    """The records of one partition not yet inserted, cut into batches."""

    topic: str
    partition: int
    start: int | None
    """The next offset to commit: where the current batch starts (None: from its first record)."""
    must_end: int | None
    max_records: int
    max_age_s: float
    records: list[Record] = field(default_factory=list)
    opened_at: float = 0.0

    @classmethod
    def assigned(
        cls, topic: str, partition: int, committed: Committed, max_records: int, max_age_s: float
    ) -> PartitionBuffer:
        return cls(
            topic, partition, committed.offset, parse_intent(committed), max_records, max_age_s
        )

    def add(self, record: Record, now: float) -> Batch | None:
        """Take one record; a batch when this record completes one (or completes the replay)."""
        cut = None
        if self.must_end is not None and record.offset > self.must_end:
            # The replayed batch's last record is gone (retention): nothing to repeat.
            cut = self._cut() if self.records else None
            self.must_end = None
        if not self.records:
            self.opened_at = now
        self.records.append(record)
        if cut is not None:
            return cut
        if self.must_end is not None:
            return self._cut() if record.offset >= self.must_end else None
        return self._cut() if len(self.records) >= self.max_records else None

    def due(self, now: float) -> Batch | None:
        """The batch whose oldest record has waited long enough, if any."""
        if self.records and self.must_end is None and now - self.opened_at >= self.max_age_s:
            return self._cut()
        return None

    def _cut(self) -> Batch:
        records, self.records = self.records, []
        start = self.start if self.start is not None else records[0].offset
        replay = self.must_end is not None
        batch = Batch(self.topic, self.partition, start, records[-1].offset, records, replay)
        self.start = batch.next_offset
        self.must_end = None
        return batch
