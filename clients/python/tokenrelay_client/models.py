"""What the API answers, as pydantic models that keep fields they do not know.

A newer server may add fields (the API only adds within a version): they are
kept on the model (``extra="allow"``) rather than refused, so this client keeps
working against it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Job(_Answer):
    """A job just accepted: ``POST /v1/jobs``."""

    job_id: str
    status: str
    priority: str
    stream_url: str
    stream_token: str
    estimated_cost_usd: float | None = None


class Usage(_Answer):
    prompt_tokens: int
    completion_tokens: int


class JobState(_Answer):
    """``GET /v1/jobs/{id}``."""

    job_id: str
    tenant: str
    status: str
    priority: str | None = None
    model: str | None = None
    provider: str | None = None
    batch_id: str | None = None
    attempt: int = 0
    token_count: int = 0
    max_tokens: int | None = None
    content: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    tokens_per_s: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    queued_at: int | None = None
    finished_at: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class Event(_Answer):
    """One event of a job's stream; ``id`` is its cursor (a Kafka offset, as a string)."""

    id: str | None = None
    type: str
    job_id: str
    attempt: int
    seq: int
    ts: int

    @property
    def terminal(self) -> bool:
        return self.type in ("completed", "failed", "cancelled")


class TokenEvent(Event):
    type: Literal["token"]
    text: str
    index: int


class CompletedEvent(Event):
    type: Literal["completed"]
    content: str
    usage: Usage
    cost_usd: float
    finish_reason: str | None = None


def event_of(kind: str, data: dict[str, Any], event_id: str | None) -> Event:
    """The typed event of one SSE event."""
    fields = {**data, "id": event_id}
    if kind == "token":
        return TokenEvent.model_validate(fields)
    if kind == "completed":
        return CompletedEvent.model_validate(fields)
    return Event.model_validate(fields)


class Batch(_Answer):
    """``POST /v1/batches`` (``batch_id``, ``job_ids``) and ``GET /v1/batches/{id}``."""

    batch_id: str
    status: str | None = None
    job_ids: list[str] | None = None
    total: int | None = None
    progress_pct: float | None = None
    eta_s: float | None = None
    cost_usd: float | None = None
