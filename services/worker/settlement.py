"""What ends one delivery of a job: the records published, in one transaction, with its offset.

Each event goes to ``tokenrelay.tokens`` and its copy to ``tokenrelay.lifecycle``
in the same transaction (``services.core.lifecycle``).

A ``completed`` or ``cancelled`` job ends with its terminal event. A failed one
ends with ``retrying`` and the next attempt's command on the retry topic when
the backoff rule allows another attempt, else with ``failed`` — plus a letter
on the DLQ when its attempts ran out or the failure was internal.

A command that cannot be read at all goes to the DLQ too, and when its key
names a job, that job ends with ``failed`` (``invalid_command``) beside the
letter (``events.unreadable_command``), so no accepted job waits for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from schemas.commands import JobCommand
from schemas.dead_letter import DeadLetter
from schemas.events import ErrorKind, Failed, JobEvent
from services.core.ids import now_us
from services.core.kafka import OutRecord
from services.core.lifecycle import event_records
from services.core.metrics import DEAD_LETTERS, RETRIES
from services.core.serde import encode
from services.core.settings import Topics
from services.worker.backoff import Outcome, decide
from services.worker.events import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float
    max_s: float


def settlement(
    topics: Topics, policy: RetryPolicy, source: str, command: JobCommand, terminal: JobEvent
) -> list[OutRecord]:
    """The records that end this delivery of the job; ``source`` is where it was read."""
    key = command.job_id
    if not isinstance(terminal, Failed):
        return event_records(topics, key, encode(terminal))
    decision = decide(
        retryable=terminal.retryable,
        attempt=command.attempt,
        max_attempts=command.request.max_attempts,
        retry_after_s=terminal.retry_after_s,
        base_s=policy.base_s,
        max_s=policy.max_s,
    )
    if decision.outcome is Outcome.RETRY:
        not_before = now_us() + int(decision.delay_s * 1e6)
        handed_on = retrying(terminal, not_before)
        again = command.model_copy(
            update={"attempt": command.attempt + 1, "not_before": not_before}
        )
        RETRIES.labels(terminal.error_kind.value).inc()
        log.info(
            "job %s attempt %d %s; attempt %d in %.1fs",
            key,
            command.attempt,
            terminal.error_kind.value,
            command.attempt + 1,
            decision.delay_s,
        )
        return [
            *event_records(topics, key, encode(handed_on)),
            OutRecord(topics.retry, key, encode(again)),
        ]
    out = event_records(topics, key, encode(terminal))
    if decision.outcome is Outcome.EXHAUSTED or terminal.error_kind is ErrorKind.INTERNAL:
        DEAD_LETTERS.labels("exhausted").inc()
        letter = DeadLetter(
            source=source,
            error_kind=terminal.error_kind.value,
            error=terminal.message,
            ts=now_us(),
            command=command,
        )
        out.append(OutRecord(topics.dlq, key, encode(letter)))
    return out
