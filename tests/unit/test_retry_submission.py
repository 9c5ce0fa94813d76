import pytest

from schemas.commands import JobCommand
from schemas.jobs import JobRequest, Priority
from schemas.state import JobState, JobStatus
from services.core.errors import ApiError
from services.ingest.retry import retry_submission


def original(max_attempts: int = 3) -> JobCommand:
    return JobCommand(
        job_id="j1",
        tenant="alice",
        submitted_at=100,
        not_before=150,
        batch_id="b1",
        provider="fake",
        model="fake-1",
        request=JobRequest(prompt="p", priority=Priority.HIGH, max_attempts=max_attempts),
    )


def state(attempt: int, submissions: int = 0) -> JobState:
    return JobState(
        job_id="j1",
        tenant="alice",
        status=JobStatus.FAILED,
        priority=Priority.HIGH,
        model="fake-1",
        provider="fake",
        batch_id="b1",
        attempt=attempt,
        submissions=submissions,
        queued_at=100,
        updated_at=500,
    )


def test_a_retry_is_a_new_submission_and_the_next_attempt() -> None:
    sub = retry_submission(state(attempt=3, submissions=1), original(), now=1000)
    q, c = sub.queued, sub.command
    assert (q.attempt, q.seq, q.ts, q.tenant) == (0, 2, 1000, "alice")
    assert (q.priority, q.model, q.provider, q.batch_id) == (Priority.HIGH, "fake-1", "fake", "b1")
    assert (c.attempt, c.submitted_at, c.not_before, c.batch_id) == (4, 1000, None, "b1")
    assert c.request.prompt == "p"


def test_a_retry_gets_a_fresh_budget_of_attempts() -> None:
    assert retry_submission(state(3), original(3), 1).command.request.max_attempts == 6
    assert retry_submission(state(1), original(1), 1).command.request.max_attempts == 2
    assert retry_submission(state(45), original(10), 1).command.request.max_attempts == 50


def test_a_job_at_the_attempt_limit_cannot_be_retried() -> None:
    with pytest.raises(ApiError) as caught:
        retry_submission(state(50), original(), 1)
    assert caught.value.status == 409
