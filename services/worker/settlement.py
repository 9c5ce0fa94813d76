"""What ends one delivery of a job: the records published, in one transaction, with its offset.

A ``completed`` or ``cancelled`` job ends with its terminal event. A failed one
ends with ``retrying`` and the next attempt's command on the retry topic when
the backoff rule allows another attempt, else with ``failed`` — plus a letter
on the DLQ when its attempts ran out or the failure was internal.

A command that cannot be read at all goes to the DLQ too, and when its key
names a job, that job ends with ``failed`` (``invalid_command``) beside the
letter (``unreadable_command``), so no accepted job waits for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.commands import JobCommand
from schemas.dead_letter import DeadLetter
from schemas.events import ErrorKind, Failed, JobEvent, Retrying
from services.core.ids import is_issued_id, now_us
from services.core.kafka import OutRecord
from services.core.metrics import DEAD_LETTERS, RETRIES
from services.core.serde import encode
from services.core.settings import Topics
from services.worker.backoff import Outcome, decide

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
        return [OutRecord(topics.tokens, key, encode(terminal))]
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
        retrying = Retrying(
            **terminal.model_dump(
                include={"job_id", "attempt", "seq", "ts", "worker_id", "tenant"}
            ),
            error_kind=terminal.error_kind,
            message=terminal.message,
            not_before=not_before,
            next_attempt=command.attempt + 1,
        )
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
            OutRecord(topics.tokens, key, encode(retrying)),
            OutRecord(topics.retry, key, encode(again)),
        ]
    out = [OutRecord(topics.tokens, key, encode(terminal))]
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


def unreadable_command(
    key: bytes | None, raw: bytes | None, error: str, worker_id: str
) -> Failed | None:
    """The terminal event of the job a poison command names, when its key is a job id.

    The tenant and attempt are taken from the value where it still shows them
    (a command that parses as JSON but breaks the schema); else attempt 1 and no
    tenant (the job's state keeps the tenant its ``queued`` event gave it).
    """
    job_id = (key or b"").decode("utf-8", "replace")
    if not is_issued_id(job_id):
        return None
    fields = _loose_fields(raw)
    attempt = fields.get("attempt")
    tenant = fields.get("tenant")
    return Failed(
        job_id=job_id,
        attempt=attempt if isinstance(attempt, int) and 1 <= attempt <= 1000 else 1,
        seq=0,
        ts=now_us(),
        worker_id=worker_id,
        tenant=tenant if isinstance(tenant, str) and len(tenant) <= 200 else "",
        error_kind=ErrorKind.INVALID_COMMAND,
        message=f"the job's command cannot be read: {error[:500]}",
        retryable=False,
    )


def _loose_fields(raw: bytes | None) -> dict[str, Any]:
    try:
        value = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
