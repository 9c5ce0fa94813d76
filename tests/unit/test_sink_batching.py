"""The sink's batches: cut by size and age, and a crashed batch repeated exactly."""

from __future__ import annotations

from services.analytics.batching import PartitionBuffer, intent_note, parse_intent
from services.core.kafka import Committed, Record


def rec(offset: int) -> Record:
    return Record("tokens", 1, offset, b"k", b"{}", 0)


def buffer(committed: Committed, max_records: int = 3, max_age_s: float = 1.0) -> PartitionBuffer:
    return PartitionBuffer.assigned("tokens", 1, committed, max_records, max_age_s)


def test_a_batch_is_cut_at_its_size_and_starts_where_the_last_one_ended() -> None:
    buf = buffer(Committed(10, ""))
    assert buf.add(rec(10), 0.0) is None
    assert buf.add(rec(12), 0.0) is None  # 11 was a transaction marker
    first = buf.add(rec(13), 0.0)
    assert first is not None
    assert (first.start, first.last, first.next_offset) == (10, 13, 14)
    assert [r.offset for r in first.records] == [10, 12, 13]
    assert first.token == "tokens:1:10-13" and not first.replay
    buf.add(rec(14), 0.0)
    buf.add(rec(15), 0.0)
    second = buf.add(rec(16), 0.0)
    assert second is not None and (second.start, second.last) == (14, 16)


def test_a_batch_is_cut_when_its_oldest_record_waited_long_enough() -> None:
    buf = buffer(Committed(None, ""), max_records=100, max_age_s=1.0)
    assert buf.due(5.0) is None  # nothing held
    buf.add(rec(7), 5.0)
    buf.add(rec(8), 5.5)
    assert buf.due(5.9) is None
    batch = buf.due(6.0)
    assert batch is not None
    assert (batch.start, batch.last) == (7, 8)  # no committed offset: from its first record


def test_the_intent_names_the_batch_a_crash_left_unfinished() -> None:
    assert parse_intent(Committed(10, intent_note(42))) == 42
    assert parse_intent(Committed(10, "")) is None
    assert parse_intent(Committed(None, intent_note(42))) is None
    assert parse_intent(Committed(50, intent_note(42))) is None  # finished: committed past it
    assert parse_intent(Committed(10, "something else")) is None


def test_after_a_crash_the_same_records_form_the_same_batch_whatever_the_size_and_age() -> None:
    before = buffer(Committed(10, ""), max_records=3)
    for o in (10, 11):
        before.add(rec(o), 0.0)
    crashed = before.add(rec(12), 0.0)
    assert crashed is not None
    # The restarted sink reads the intent with a different batch size and a long pause.
    after = buffer(Committed(10, intent_note(crashed.last)), max_records=1, max_age_s=0.0)
    assert after.add(rec(10), 0.0) is None
    assert after.due(100.0) is None  # never cut early while repeating
    assert after.add(rec(11), 0.0) is None
    again = after.add(rec(12), 0.0)
    assert again is not None and again.replay
    assert again.token == crashed.token
    assert [r.offset for r in again.records] == [10, 11, 12]
    # Then it batches as configured.
    nxt = after.add(rec(13), 0.0)
    assert nxt is not None and (nxt.start, nxt.last, nxt.replay) == (13, 13, False)


def test_a_repeat_whose_last_record_is_gone_ends_at_what_is_left() -> None:
    buf = buffer(Committed(10, intent_note(12)), max_records=100)
    buf.add(rec(10), 0.0)
    cut = buf.add(rec(20), 0.0)  # 11 and 12 were deleted by retention
    assert cut is not None and (cut.start, cut.last, cut.replay) == (10, 10, True)
    assert [r.offset for r in buf.records] == [20]
    assert buf.must_end is None
