"""The protocol's duplicate rule, as both the reducer and the stream filter apply it."""

from __future__ import annotations

from schemas.rules import (
    FIRST_ATTEMPT,
    NO_RUN_SEEN,
    NONE_SEEN,
    SUBMISSION_ATTEMPT,
    TERMINAL_EVENT_TYPES,
    TERMINAL_STATUS,
    already_seen,
)


def test_nothing_is_a_duplicate_to_a_reader_that_has_seen_nothing() -> None:
    assert not already_seen(SUBMISSION_ATTEMPT, 0, submission=NONE_SEEN, run=NO_RUN_SEEN)
    assert not already_seen(FIRST_ATTEMPT, 0, submission=NONE_SEEN, run=NO_RUN_SEEN)


def test_queued_events_are_ordered_by_submission_and_apart_from_runs() -> None:
    assert already_seen(SUBMISSION_ATTEMPT, 0, submission=0, run=NO_RUN_SEEN)
    assert not already_seen(SUBMISSION_ATTEMPT, 1, submission=0, run=(3, 40)), (
        "an admin retry's queued event is new, however far the runs went"
    )


def test_run_events_are_ordered_by_attempt_then_seq() -> None:
    seen = (2, 5)
    assert already_seen(2, 5, submission=0, run=seen)
    assert already_seen(1, 99, submission=0, run=seen), "an older attempt's late event"
    assert not already_seen(2, 6, submission=0, run=seen)
    assert not already_seen(3, 0, submission=0, run=seen), "a new attempt starts at seq 0"


def test_every_terminal_type_has_a_status() -> None:
    assert set(TERMINAL_STATUS) == TERMINAL_EVENT_TYPES == {"completed", "failed", "cancelled"}
    assert TERMINAL_STATUS["completed"] == "succeeded"
