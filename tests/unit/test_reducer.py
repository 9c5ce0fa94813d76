"""The job state machine: duplicates change nothing, new attempts reset, finished is final."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    Cancelled,
    Completed,
    ErrorKind,
    Failed,
    JobEvent,
    Queued,
    Retrying,
    Started,
    Token,
    Usage,
)
from schemas.jobs import Priority
from schemas.state import JobState, JobStatus
from services.aggregator.reducer import reduce

W = {"worker_id": "w", "tenant": "acme"}


def queued(job: str, seq: int = 0, ts: int = 1) -> Queued:
    return Queued(
        job_id=job,
        attempt=0,
        seq=seq,
        ts=ts,
        priority=Priority.HIGH,
        model="m",
        provider="fake",
        **W,
    )


def started(job: str, attempt: int, ts: int) -> Started:
    return Started(
        job_id=job,
        attempt=attempt,
        seq=0,
        ts=ts,
        model="m",
        provider="fake",
        queue_wait_ms=1.0,
        **W,
    )


def token(job: str, attempt: int, i: int, ts: int) -> Token:
    return Token(job_id=job, attempt=attempt, seq=i, ts=ts, text=f"t{i} ", index=i, **W)


def completed(job: str, attempt: int, seq: int, ts: int) -> Completed:
    n = seq - 1
    return Completed(
        job_id=job,
        attempt=attempt,
        seq=seq,
        ts=ts,
        content="".join(f"t{i} " for i in range(1, n + 1)),
        finish_reason="stop",
        usage=Usage(prompt_tokens=3, completion_tokens=n),
        cost_usd=0.25,
        ttft_ms=5.0,
        duration_ms=50.0,
        tokens_per_s=10.0,
        tokens=n,
        **W,
    )


def failed(job: str, attempt: int, seq: int, ts: int) -> Failed:
    return Failed(
        job_id=job,
        attempt=attempt,
        seq=seq,
        ts=ts,
        error_kind=ErrorKind.PROVIDER,
        message="boom",
        retryable=False,
        tokens=seq - 1,
        **W,
    )


def fold(events: list[JobEvent]) -> dict[str, JobState]:
    states: dict[str, JobState] = {}
    for ev in events:
        states[ev.job_id] = reduce(states.get(ev.job_id), ev)
    return states


def test_a_run_from_queue_to_success() -> None:
    evs: list[JobEvent] = [queued("j"), started("j", 1, 10)]
    evs += [token("j", 1, i, 10 + i) for i in (1, 2, 3)]
    evs.append(completed("j", 1, 4, 20))
    s = fold(evs)["j"]
    assert (s.status, s.attempt, s.token_count) == (JobStatus.SUCCEEDED, 1, 3)
    assert s.content == "t1 t2 t3 "
    assert (s.queued_at, s.started_at, s.first_token_at, s.finished_at) == (1, 10, 11, 20)
    assert s.priority is Priority.HIGH
    assert s.cost_usd == 0.25


def test_a_duplicate_changes_nothing() -> None:
    evs: list[JobEvent] = [queued("j"), started("j", 1, 10), token("j", 1, 1, 11)]
    s = fold(evs)["j"]
    for ev in evs:
        assert reduce(s, ev) is s


def test_a_new_attempt_resets_the_old_progress() -> None:
    evs: list[JobEvent] = [queued("j"), started("j", 1, 10), token("j", 1, 1, 11)]
    evs += [token("j", 1, 2, 12), started("j", 2, 20)]
    s = fold(evs)["j"]
    assert (s.status, s.attempt, s.token_count, s.first_token_at) == (JobStatus.RUNNING, 2, 0, None)
    s = reduce(s, token("j", 1, 3, 21))
    assert s.token_count == 0, "a token of the abandoned attempt counts for nothing"


def test_the_resume_cursor_is_the_submission_then_the_attempt_start() -> None:
    s = reduce(None, queued("j"), partition=2, offset=40)
    assert (s.partition, s.attempt_start_offset) == (2, 40)
    s = reduce(s, started("j", 1, 10), partition=2, offset=41)
    s = reduce(s, token("j", 1, 1, 11), partition=2, offset=42)
    assert s.attempt_start_offset == 40, "a late watcher of a first attempt sees its queued event"
    s = reduce(s, started("j", 2, 20), partition=2, offset=50)
    assert s.attempt_start_offset == 50, "a retried job is watched from its current attempt"
    s = reduce(s, failed("j", 2, 1, 21), partition=2, offset=51)
    s = reduce(s, queued("j", seq=1, ts=30), partition=2, offset=60)
    assert s.attempt_start_offset == 60, "an admin retry is watched from its new queued event"
    s = reduce(s, started("j", 3, 31), partition=2, offset=61)
    assert s.attempt_start_offset == 60


def test_finished_is_final_until_an_admin_retry() -> None:
    s = fold([queued("j"), started("j", 1, 10), failed("j", 1, 1, 11)])["j"]
    assert s.status is JobStatus.FAILED
    assert reduce(s, started("j", 2, 30)) is s, "a run event after the end is ignored"
    s = reduce(s, queued("j", seq=1, ts=40))
    assert (s.status, s.submissions, s.error_kind, s.finished_at) == (
        JobStatus.QUEUED,
        1,
        None,
        None,
    )
    s = reduce(s, started("j", 2, 50))
    assert (s.status, s.attempt) == (JobStatus.RUNNING, 2)
    assert reduce(s, failed("j", 1, 1, 11)) is s, "the old attempt's end replayed"


def test_cancelled_keeps_who_and_the_count() -> None:
    evs: list[JobEvent] = [queued("j"), started("j", 1, 10), token("j", 1, 1, 11)]
    evs.append(Cancelled(job_id="j", attempt=1, seq=5, ts=15, by="acme", tokens=4, **W))
    s = fold(evs)["j"]
    assert (s.status, s.cancelled_by, s.token_count) == (JobStatus.CANCELLED, "acme", 4)


def test_events_of_a_job_whose_queued_was_never_seen() -> None:
    s = fold([started("j", 1, 10), token("j", 1, 1, 11)])["j"]
    assert (s.status, s.priority, s.token_count) == (JobStatus.RUNNING, None, 1)


def test_a_late_queued_copy_fills_in_and_never_reopens_its_own_run() -> None:
    """On the lifecycle topic ``queued``'s copy travels beside the command, so the worker's
    copies may come first: the job keeps what its run says and learns what ``queued`` says."""
    running = fold([started("j", 1, 10), token("j", 1, 1, 11)])["j"]
    s = reduce(running, queued("j", ts=1), partition=2, offset=40)
    assert (s.status, s.attempt, s.priority, s.queued_at) == (
        JobStatus.RUNNING,
        1,
        Priority.HIGH,
        1,
    )
    done = fold([started("j", 1, 10), completed("j", 1, 2, 20)])["j"]
    s = reduce(done, queued("j", ts=1))
    assert (s.status, s.finished_at, s.content) == (JobStatus.SUCCEEDED, 20, "t1 ")
    assert (s.priority, s.queued_at) == (Priority.HIGH, 1)
    assert reduce(s, queued("j", ts=1)) is s, "and it is then a duplicate like any other"


# --- the property: any interleaving with duplicates gives the same final state ---


@dataclass
class Expected:
    status: JobStatus
    attempt: int
    tokens: int


@st.composite
def job_history(draw: st.DrawFn, job: str) -> tuple[list[JobEvent], Expected]:
    """A valid history of one job: crashes, retries, an end, maybe an admin retry."""
    ts = iter(range(1, 10_000))
    events: list[JobEvent] = [queued(job, 0, next(ts))]
    submissions = 0
    expected = Expected(JobStatus.QUEUED, 0, 0)
    for attempt in range(1, draw(st.integers(1, 4)) + 1):
        n = draw(st.integers(0, 5))
        events.append(started(job, attempt, next(ts)))
        events += [token(job, attempt, i, next(ts)) for i in range(1, n + 1)]
        end = draw(st.sampled_from(["crash", "retrying", "completed", "failed", "cancelled"]))
        expected = Expected(JobStatus.RUNNING, attempt, n)
        if end == "retrying":
            events.append(
                Retrying(
                    job_id=job,
                    attempt=attempt,
                    seq=n + 1,
                    ts=next(ts),
                    error_kind=ErrorKind.RATE_LIMITED,
                    message="429",
                    not_before=0,
                    next_attempt=attempt + 1,
                    **W,
                )
            )
            expected = Expected(JobStatus.RETRYING, attempt, n)
        elif end == "completed":
            events.append(completed(job, attempt, n + 1, next(ts)))
            expected = Expected(JobStatus.SUCCEEDED, attempt, n)
        elif end == "failed":
            events.append(failed(job, attempt, n + 1, next(ts)))
            expected = Expected(JobStatus.FAILED, attempt, n)
        elif end == "cancelled":
            events.append(
                Cancelled(
                    job_id=job, attempt=attempt, seq=n + 1, ts=next(ts), by="x", tokens=n, **W
                )
            )
            expected = Expected(JobStatus.CANCELLED, attempt, n)
        if expected.status.finished:
            if expected.status is JobStatus.SUCCEEDED or not draw(st.booleans()):
                break
            submissions += 1
            events.append(queued(job, submissions, next(ts)))
            expected = Expected(JobStatus.QUEUED, attempt, 0)
    return events, expected


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[JobEvent], list[JobEvent], dict[str, Expected]]:
    """(history, what a consumer saw: interleaved per-job-ordered with duplicates, expected)."""
    histories = [draw(job_history(f"job-{i}")) for i in range(draw(st.integers(1, 4)))]
    rng = random.Random(draw(st.integers(0, 2**32)))
    queues = [list(h) for h, _ in histories]
    seen: list[JobEvent] = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        seen.append(q.pop(0))
        if rng.random() < 0.3:  # a redelivery: a run of events already seen, again
            start = rng.randrange(len(seen))
            seen += seen[start : start + rng.randint(1, 6)]
    history = [ev for h, _ in histories for ev in h]
    return history, seen, {h[0].job_id: e for h, e in histories}


@settings(max_examples=300, deadline=None)
@given(delivered())
def test_any_interleaving_with_duplicates_gives_the_same_state(
    case: tuple[list[JobEvent], list[JobEvent], dict[str, Expected]],
) -> None:
    history, seen, expected = case
    clean, messy = fold(history), fold(seen)
    assert messy == clean
    for job, exp in expected.items():
        s = clean[job]
        assert (s.status, s.attempt) == (exp.status, exp.attempt)
        if exp.status is not JobStatus.QUEUED:
            assert s.token_count == exp.tokens
