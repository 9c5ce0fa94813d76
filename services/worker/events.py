"""Every event a worker writes about a job, built in one place.

An attempt's events share the job's identity (``job_id``, ``attempt``,
``worker_id``, ``tenant``) and are numbered from ``seq`` 0 (``started``) in the
order they are built; ``AttemptEvents`` holds that numbering, so no event of an
attempt can skip or repeat a ``seq``. ``retrying`` takes the place of the
``failed`` that it replaces (same ``seq``), and a command no worker can read
gets a ``failed`` of its own (``unreadable_command``). Pure: no Kafka here.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.commands import JobCommand
from schemas.control import Cancel, CancelBatch
from schemas.events import (
    Cancelled,
    Completed,
    ErrorKind,
    Failed,
    Percentiles,
    Retrying,
    Started,
    Token,
    Usage,
)
from schemas.rules import FIRST_ATTEMPT
from services.core.ids import is_issued_id, now_us


class AttemptEvents:
    """Builds the events of one attempt with the shared fields and a running ``seq``."""

    def __init__(self, command: JobCommand, worker_id: str) -> None:
        self._common = {
            "job_id": command.job_id,
            "attempt": command.attempt,
            "worker_id": worker_id,
            "tenant": command.tenant,
        }
        self._seq = 0

    def _next(self) -> dict[str, Any]:
        out = {**self._common, "seq": self._seq, "ts": now_us()}
        self._seq += 1
        return out

    def started(self, model: str, provider: str, queue_wait_ms: float) -> Started:
        return Started(**self._next(), model=model, provider=provider, queue_wait_ms=queue_wait_ms)

    def token(self, text: str, index: int) -> Token:
        return Token(**self._next(), text=text, index=index)

    def completed(
        self,
        *,
        content: str,
        parsed: Any,
        finish_reason: str | None,
        usage: Usage,
        cost_usd: float,
        ttft_ms: float | None,
        itl_ms: Percentiles | None,
        duration_ms: float,
        tokens_per_s: float,
        tokens: int,
    ) -> Completed:
        return Completed(
            **self._next(),
            content=content,
            parsed=parsed,
            finish_reason=finish_reason,
            usage=usage,
            cost_usd=cost_usd,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            duration_ms=duration_ms,
            tokens_per_s=tokens_per_s,
            tokens=tokens,
        )

    def failed(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        tokens: int | None = None,
        usage: Usage | None = None,
        cost_usd: float | None = None,
    ) -> Failed:
        return Failed(
            **self._next(),
            error_kind=kind,
            message=message,
            retryable=retryable,
            retry_after_s=retry_after_s,
            tokens=tokens,
            usage=usage,
            cost_usd=cost_usd,
        )

    def cancelled(self, cancel: Cancel | CancelBatch | None, tokens: int = 0) -> Cancelled:
        return Cancelled(
            **self._next(),
            by=cancel.by if cancel else "unknown",
            reason=cancel.reason if cancel else None,
            tokens=tokens,
        )


def retrying(failed: Failed, not_before: int) -> Retrying:
    """What a retryable ``failed`` becomes when another attempt follows (same place, same seq)."""
    return Retrying(
        **failed.model_dump(include={"job_id", "attempt", "seq", "ts", "worker_id", "tenant"}),
        error_kind=failed.error_kind,
        message=failed.message,
        not_before=not_before,
        next_attempt=failed.attempt + 1,
    )


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
        attempt=attempt if isinstance(attempt, int) and 1 <= attempt <= 1000 else FIRST_ATTEMPT,
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
