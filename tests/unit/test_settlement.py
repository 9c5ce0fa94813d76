"""What ends one delivery of a job: the records its transaction publishes, by outcome.

Every event goes to the tokens topic with its copy on the lifecycle topic, in the
same transaction, byte for byte the same."""

from __future__ import annotations

from schemas.commands import JobCommand
from schemas.dead_letter import DeadLetter
from schemas.events import ErrorKind, Failed, Retrying
from schemas.jobs import JobRequest
from services.core.serde import decode, decode_event
from services.core.settings import Topics
from services.worker.events import AttemptEvents
from services.worker.settlement import RetryPolicy, settlement

TOPICS = Topics("t")
POLICY = RetryPolicy(base_s=0.0, max_s=0.0)


def command(attempt: int = 1, max_attempts: int = 3) -> JobCommand:
    return JobCommand(
        job_id="j",
        tenant="acme",
        attempt=attempt,
        submitted_at=0,
        provider="fake",
        model="m",
        request=JobRequest(prompt="hi", max_attempts=max_attempts),
    )


def failed(cmd: JobCommand, kind: ErrorKind, retryable: bool) -> Failed:
    ev = AttemptEvents(cmd, "w")
    ev.started("m", "fake", 0.0)
    return ev.failed(kind, "boom", retryable=retryable)


def topics_of(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.topic for r in records]


EVENT = [TOPICS.tokens, TOPICS.lifecycle]
"""An event and its lifecycle copy."""


def copies_are_exact(records: list) -> bool:  # type: ignore[type-arg]
    return records[0].value == records[1].value and records[0].key == records[1].key


def test_a_completed_or_cancelled_attempt_publishes_its_terminal_event_only() -> None:
    cmd = command()
    ev = AttemptEvents(cmd, "w")
    records = settlement(TOPICS, POLICY, "src", cmd, ev.cancelled(None))
    assert topics_of(records) == EVENT
    assert copies_are_exact(records)
    assert decode_event(records[0].value).type == "cancelled"


def test_a_retryable_failure_with_attempts_left_hands_on_to_the_next_attempt() -> None:
    cmd = command(attempt=1)
    records = settlement(TOPICS, POLICY, "src", cmd, failed(cmd, ErrorKind.PROVIDER, True))
    assert topics_of(records) == [*EVENT, TOPICS.retry]
    assert copies_are_exact(records)
    retrying = decode_event(records[0].value)
    assert isinstance(retrying, Retrying)
    assert (retrying.seq, retrying.next_attempt) == (1, 2), "in the failed event's place"
    again = decode(JobCommand, records[2].value)
    assert again.attempt == 2 and again.not_before is not None


def test_the_last_attempt_fails_and_dead_letters_the_command() -> None:
    cmd = command(attempt=3, max_attempts=3)
    records = settlement(TOPICS, POLICY, "src@1", cmd, failed(cmd, ErrorKind.TIMEOUT, True))
    assert topics_of(records) == [*EVENT, TOPICS.dlq]
    letter = decode(DeadLetter, records[2].value)
    assert (letter.source, letter.error_kind, letter.command) == ("src@1", "timeout", cmd)


def test_a_deterministic_failure_fails_at_once_without_a_letter() -> None:
    cmd = command(attempt=1)
    for kind in (ErrorKind.AUTH, ErrorKind.INVALID_REQUEST, ErrorKind.INVALID_OUTPUT):
        records = settlement(TOPICS, POLICY, "src", cmd, failed(cmd, kind, False))
        assert topics_of(records) == EVENT, kind


def test_an_internal_failure_is_dead_lettered_even_on_its_first_attempt() -> None:
    cmd = command(attempt=1)
    records = settlement(TOPICS, POLICY, "src", cmd, failed(cmd, ErrorKind.INTERNAL, False))
    assert topics_of(records) == [*EVENT, TOPICS.dlq]
