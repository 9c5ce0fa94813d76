"""Records of ``tokenrelay.lifecycle`` → rows of ``job_events`` and ``jobs``. Pure: no I/O.

Every event but ``token`` becomes a ``job_events`` row; a terminal event
(``completed``, ``failed``, ``cancelled``) also becomes a ``jobs`` row, filled
with what the job's ``queued`` and ``started`` events said (its ``JobContext``).

This is the sink's hot path. Events are validated against a column-shaped
view of the event schema (``LifecycleRow``, pydantic ``TypedDict``s checked
straight from the JSON bytes, 2x cheaper than building the ``schemas.events``
models): every field that becomes a column is checked against the column's type
and range, so a record ClickHouse would refuse is a ``DecodeError`` and goes to
the DLQ, it never blocks a batch. Token events, most of the topic, are
recognised without being parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from schemas.events import ErrorKind
from schemas.jobs import Priority
from schemas.rules import TERMINAL_STATUS
from services.core.errors import DecodeError
from services.core.kafka import Record

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
_BULKY = frozenset({"content", "parsed"})
"""Fields of ``completed`` left out of ``job_events.payload``: the output lives in Kafka."""
_TOKEN = b'"type":"token"'
_CONTENT = b'"content"'

# Column ranges: UInt16 attempt, UInt32 seq and token counts, DateTime64(6) until 2299,
# Decimal(18, 9) dollars.
U16 = Annotated[int, Field(ge=0, le=2**16 - 1)]
U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
Micros = Annotated[int, Field(ge=0, le=10_413_791_999_999_999)]
Dollars = Annotated[float, Field(ge=0, le=999_999_999)]
Millis = Annotated[float, Field(ge=0)]
_CONFIG = ConfigDict(extra="allow", use_enum_values=True)


class _Row(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]

    job_id: str
    attempt: U16
    seq: U32
    ts: Micros
    tenant: str
    worker_id: str


class _QueuedRow(_Row):
    type: Literal["queued"]
    priority: Priority
    model: str
    provider: str
    batch_id: NotRequired[str | None]
    estimated_cost_usd: NotRequired[Dollars | None]


class _StartedRow(_Row):
    type: Literal["started"]
    model: str
    provider: str
    queue_wait_ms: NotRequired[Millis | None]


class _RetryingRow(_Row):
    type: Literal["retrying"]
    error_kind: ErrorKind


class _Usage(TypedDict):
    prompt_tokens: U32
    completion_tokens: U32


class _Percentiles(TypedDict):
    p50: Millis
    p90: Millis
    p99: Millis


class _CompletedRow(_Row):
    type: Literal["completed"]
    usage: _Usage
    cost_usd: Dollars
    ttft_ms: NotRequired[Millis | None]
    itl_ms: NotRequired[_Percentiles | None]
    duration_ms: Millis
    tokens_per_s: Millis
    finish_reason: NotRequired[str | None]
    tokens: NotRequired[U32 | None]


class _FailedRow(_Row):
    type: Literal["failed"]
    error_kind: ErrorKind
    tokens: NotRequired[U32 | None]


class _CancelledRow(_Row):
    type: Literal["cancelled"]
    tokens: NotRequired[U32 | None]


class _TokenRow(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]

    type: Literal["token"]


LifecycleRow = Annotated[
    _QueuedRow
    | _StartedRow
    | _RetryingRow
    | _CompletedRow
    | _FailedRow
    | _CancelledRow
    | _TokenRow,
    Field(discriminator="type"),
]
_rows: TypeAdapter[LifecycleRow] = TypeAdapter(LifecycleRow)


def decode_lifecycle(record: Record) -> dict[str, Any] | None:
    """The event in ``record``, checked; None for a ``token`` event (skipped unparsed).

    A token's text is JSON-escaped, so ``"type":"token"`` can only be its own type
    field; ``completed`` (whose parsed output might hold that text) always has ``content``.
    """
    value = record.value
    if value is None:
        raise DecodeError("an empty record where an event belongs")
    if _TOKEN in value and _CONTENT not in value:
        return None
    try:
        event: dict[str, Any] = _rows.validate_json(value)  # type: ignore[assignment]
    except ValidationError as exc:
        raise DecodeError(f"not a JobEvent: {exc}") from exc
    return None if event["type"] == "token" else event


@dataclass(slots=True)
class JobContext:
    """What a job's ``queued`` and latest ``started`` events said."""

    queued_at: int | None = None
    priority: str = ""
    model: str = ""
    provider: str = ""
    batch_id: str = ""
    estimated_cost_usd: float = 0.0
    started_attempt: int | None = None
    started_at: int | None = None
    queue_wait_ms: float | None = None

    def learn(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "queued":
            self.queued_at = event["ts"]
            self.priority = event["priority"]
            self.model = event["model"]
            self.provider = event["provider"]
            self.batch_id = event.get("batch_id") or ""
            self.estimated_cost_usd = event.get("estimated_cost_usd") or 0.0
        elif kind == "started":
            self.started_attempt = event["attempt"]
            self.started_at = event["ts"]
            self.queue_wait_ms = event.get("queue_wait_ms")
            self.model = event["model"]
            self.provider = event["provider"]


@dataclass(slots=True)
class Columns:
    """Rows for one table, handed to clickhouse-connect column by column."""

    names: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def append(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)

    @property
    def data(self) -> list[list[Any]]:
        return [list(column) for column in zip(*self.rows, strict=True)]

    def __len__(self) -> int:
        return len(self.rows)


def event_row(event: dict[str, Any], record: Record, ctx: JobContext | None) -> tuple[Any, ...]:
    kind = event["type"]
    payload = record.value
    if kind == "completed":
        payload = orjson.dumps({k: v for k, v in event.items() if k not in _BULKY})
    return (
        event["job_id"],
        event["attempt"],
        event["seq"],
        kind,
        event["ts"],
        event["tenant"],
        event["worker_id"],
        event.get("priority") or (ctx.priority if ctx else ""),
        event.get("model") or (ctx.model if ctx else ""),
        event.get("provider") or (ctx.provider if ctx else ""),
        event.get("batch_id") or (ctx.batch_id if ctx else ""),
        event.get("error_kind") or "",
        payload,
        record.partition,
        record.offset,
    )


def job_row(event: dict[str, Any], record: Record, ctx: JobContext) -> tuple[Any, ...]:
    """The ``jobs`` row of a terminal event.

    Dollars stay floats rounded to 1e-9: clickhouse-connect writes ``Decimal(str(x))``,
    which is then the exact decimal the worker computed.
    """
    usage = event.get("usage") or {}
    completion = usage.get("completion_tokens", 0)
    tokens = event.get("tokens")
    started_at = ctx.started_at if ctx.started_attempt == event["attempt"] else None
    ttft = event.get("ttft_ms")
    itl = event.get("itl_ms") or {}
    first_token_at = None
    if started_at is not None and ttft is not None:
        first_token_at = started_at + round(ttft * 1000)
    return (
        event["job_id"],
        event["attempt"],
        event["tenant"],
        ctx.batch_id,
        ctx.priority,
        ctx.model,
        ctx.provider,
        TERMINAL_STATUS[event["type"]],
        event.get("error_kind") or "",
        event.get("finish_reason") or "",
        event["worker_id"],
        usage.get("prompt_tokens", 0),
        completion,
        tokens if tokens is not None else completion,
        round(event.get("cost_usd") or 0.0, 9),
        round(ctx.estimated_cost_usd, 9),
        ctx.queued_at if ctx.queued_at is not None else (started_at or event["ts"]),
        started_at,
        first_token_at,
        event["ts"],
        ctx.queue_wait_ms if started_at is not None else None,
        ttft,
        itl.get("p50"),
        itl.get("p90"),
        itl.get("p99"),
        event.get("duration_ms"),
        event.get("tokens_per_s"),
        record.partition,
        record.offset,
    )
