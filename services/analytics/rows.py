"""Records of ``tokenrelay.tokens`` → rows of ``job_events`` and ``jobs``. Pure: no I/O.

Every event but ``token`` becomes a ``job_events`` row; a terminal event
(``completed``, ``failed``, ``cancelled``) also becomes a ``jobs`` row, filled
with what the job's ``queued`` and ``started`` events said (its ``JobContext``).
Token events, most of the topic, are recognised without being parsed; every
other event is validated against its schema, so that a record ClickHouse would
refuse never blocks the sink: it is a ``DecodeError``, and goes to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.events import (
    Cancelled,
    Completed,
    Failed,
    JobEvent,
    Queued,
    Retrying,
    Started,
    parse_event,
)
from services.core.errors import DecodeError
from services.core.kafka import Record
from services.core.prices import NANO

EVENT_COLUMNS = (
    "job_id",
    "attempt",
    "seq",
    "type",
    "ts",
    "tenant",
    "worker_id",
    "priority",
    "model",
    "provider",
    "batch_id",
    "error_kind",
    "payload",
    "kafka_partition",
    "kafka_offset",
)
JOB_COLUMNS = (
    "job_id",
    "attempt",
    "tenant",
    "batch_id",
    "priority",
    "model",
    "provider",
    "status",
    "error_kind",
    "finish_reason",
    "worker_id",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
    "cost_usd",
    "estimated_cost_usd",
    "queued_at",
    "started_at",
    "first_token_at",
    "finished_at",
    "queue_wait_ms",
    "ttft_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "duration_ms",
    "tokens_per_s",
    "kafka_partition",
    "kafka_offset",
)
Terminal = Completed | Failed | Cancelled
STATUS_OF_TERMINAL = {"completed": "succeeded", "failed": "failed", "cancelled": "cancelled"}
_BULKY = {"content", "parsed"}
"""Fields of ``completed`` left out of ``job_events.payload``: the output lives in Kafka."""
_TOKEN = b'"type":"token"'
_CONTENT = b'"content"'


def usd(value: float | None) -> Decimal:
    """An event's float dollars as the exact decimal it was written from (1e-9 USD steps)."""
    if value is None:
        return Decimal(0)
    return Decimal(repr(value)).quantize(NANO)


@dataclass(slots=True)
class JobContext:
    """What a job's ``queued`` and latest ``started`` events said."""

    queued_at: int | None = None
    priority: str = ""
    model: str = ""
    provider: str = ""
    batch_id: str = ""
    estimated_cost_usd: float | None = None
    started_attempt: int | None = None
    started_at: int | None = None
    queue_wait_ms: float | None = None

    def learn(self, event: JobEvent) -> None:
        if isinstance(event, Queued):
            self.queued_at = event.ts
            self.priority = event.priority.value
            self.model = event.model
            self.provider = event.provider
            self.batch_id = event.batch_id or ""
            self.estimated_cost_usd = event.estimated_cost_usd
        elif isinstance(event, Started):
            self.started_attempt = event.attempt
            self.started_at = event.ts
            self.queue_wait_ms = event.queue_wait_ms
            self.model = event.model
            self.provider = event.provider


@dataclass(slots=True)
class Columns:
    """Column-oriented rows for one table, as clickhouse-connect inserts them."""

    names: tuple[str, ...]
    data: list[list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.data = [[] for _ in self.names]

    def append(self, row: tuple[Any, ...]) -> None:
        for column, value in zip(self.data, row, strict=True):
            column.append(value)

    def __len__(self) -> int:
        return len(self.data[0])


def decode_lifecycle(record: Record) -> JobEvent | None:
    """The event in ``record``, or None for a ``token`` event (skipped unparsed).

    A token's text is JSON-escaped, so ``"type":"token"`` can only be its own type
    field; ``completed`` (whose parsed output might hold that text) always has ``content``.
    """
    value = record.value
    if value is None:
        raise DecodeError("an empty record where an event belongs")
    if _TOKEN in value and _CONTENT not in value:
        return None
    try:
        event = parse_event(value)
    except ValidationError as exc:
        raise DecodeError(f"not a JobEvent: {exc}") from exc
    return None if event.type == "token" else event


def event_row(event: JobEvent, record: Record, ctx: JobContext | None) -> tuple[Any, ...]:
    payload = record.value or b""
    if isinstance(event, Completed):
        payload = event.model_dump_json(by_alias=True, exclude=_BULKY).encode()
    queued = event if isinstance(event, Queued) else None
    named = event if isinstance(event, Queued | Started) else None
    error_kind = event.error_kind.value if isinstance(event, Failed | Retrying) else ""
    return (
        event.job_id,
        event.attempt,
        event.seq,
        event.type,
        event.ts,
        event.tenant,
        event.worker_id,
        queued.priority.value if queued else (ctx.priority if ctx else ""),
        named.model if named else (ctx.model if ctx else ""),
        named.provider if named else (ctx.provider if ctx else ""),
        (queued.batch_id or "") if queued else (ctx.batch_id if ctx else ""),
        error_kind,
        payload.decode(),
        record.partition,
        record.offset,
    )


def job_row(event: Terminal, record: Record, ctx: JobContext) -> tuple[Any, ...]:
    """The ``jobs`` row of a terminal event."""
    done = event if isinstance(event, Completed) else None
    usage = done.usage if done else None
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    tokens = event.tokens if event.tokens is not None else completion
    started_at = ctx.started_at if ctx.started_attempt == event.attempt else None
    ttft = done.ttft_ms if done else None
    itl = done.itl_ms if done else None
    first_token_at = None
    if started_at is not None and ttft is not None:
        first_token_at = started_at + round(ttft * 1000)
    return (
        event.job_id,
        event.attempt,
        event.tenant,
        ctx.batch_id,
        ctx.priority,
        ctx.model,
        ctx.provider,
        STATUS_OF_TERMINAL[event.type],
        event.error_kind.value if isinstance(event, Failed) else "",
        (done.finish_reason or "") if done else "",
        event.worker_id,
        prompt,
        completion,
        tokens,
        usd(done.cost_usd if done else None),
        usd(ctx.estimated_cost_usd),
        ctx.queued_at if ctx.queued_at is not None else (started_at or event.ts),
        started_at,
        first_token_at,
        event.ts,
        ctx.queue_wait_ms if started_at is not None else None,
        ttft,
        itl.p50 if itl else None,
        itl.p90 if itl else None,
        itl.p99 if itl else None,
        done.duration_ms if done else None,
        done.tokens_per_s if done else None,
        record.partition,
        record.offset,
    )
