"""Records of ``tokenrelay.tokens`` → rows of ``job_events`` and ``jobs``. Pure: no I/O.

Every event but ``token`` becomes a ``job_events`` row; a terminal event
(``completed``, ``failed``, ``cancelled``) also becomes a ``jobs`` row, filled
with what the job's ``queued`` and ``started`` events said (its ``JobContext``).
Events are read as plain JSON, not through the pydantic models: the sink reads
every record of the topic and must keep up with all of them. A record that is
not an event is a ``DecodeError``; the sink sends it to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from schemas.events import TERMINAL_EVENT_TYPES
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
STATUS_OF_TERMINAL = {"completed": "succeeded", "failed": "failed", "cancelled": "cancelled"}
_BULKY = ("content", "parsed")
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

    def learn(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "queued":
            self.queued_at = event["ts"]
            self.priority = event["priority"]
            self.model = event["model"]
            self.provider = event["provider"]
            self.batch_id = event.get("batch_id") or ""
            self.estimated_cost_usd = event.get("estimated_cost_usd")
        elif kind == "started":
            self.started_attempt = event["attempt"]
            self.started_at = event["ts"]
            self.queue_wait_ms = event.get("queue_wait_ms")
            self.model = event["model"]
            self.provider = event["provider"]


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


def decode_lifecycle(record: Record) -> dict[str, Any] | None:
    """The event in ``record``, or None for a ``token`` event (most records, skipped unparsed).

    A token's text is JSON-escaped, so ``"type":"token"`` can only be its own type
    field; ``completed`` (whose parsed output might hold that text) always has ``content``.
    """
    value = record.value
    if value is None:
        raise DecodeError("an empty record where an event belongs")
    if _TOKEN in value and _CONTENT not in value:
        return None
    try:
        event = orjson.loads(value)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise DecodeError("not a JobEvent: no type")
        for key in ("job_id", "attempt", "seq", "ts", "tenant", "worker_id"):
            if key not in event:
                raise DecodeError(f"not a JobEvent: no {key}")
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    return None if event["type"] == "token" else event


def event_row(event: dict[str, Any], record: Record, ctx: JobContext | None) -> tuple[Any, ...]:
    kind = event["type"]
    payload = record.value or b""
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
        payload.decode(),
        record.partition,
        record.offset,
    )


def is_terminal(event: dict[str, Any]) -> bool:
    return event["type"] in TERMINAL_EVENT_TYPES


def job_row(event: dict[str, Any], record: Record, ctx: JobContext) -> tuple[Any, ...]:
    """The ``jobs`` row of a terminal event."""
    kind = event["type"]
    usage = event.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    tokens = event.get("tokens")
    started_at = ctx.started_at if ctx.started_attempt == event["attempt"] else None
    ttft = event.get("ttft_ms")
    itl = event.get("itl_ms") or {}
    return (
        event["job_id"],
        event["attempt"],
        event["tenant"],
        ctx.batch_id,
        ctx.priority,
        ctx.model,
        ctx.provider,
        STATUS_OF_TERMINAL[kind],
        event.get("error_kind") or "",
        event.get("finish_reason") or "",
        event["worker_id"],
        prompt,
        completion,
        tokens if tokens is not None else completion,
        usd(event.get("cost_usd")),
        usd(ctx.estimated_cost_usd),
        ctx.queued_at if ctx.queued_at is not None else (started_at or event["ts"]),
        started_at,
        started_at + round(ttft * 1000) if started_at is not None and ttft is not None else None,
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
