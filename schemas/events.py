"""Every event on ``tokenrelay.tokens`` (key: ``job_id``).

``(job_id, attempt, seq)`` identifies an event; consumers drop duplicates.
The worker numbers ``seq`` from 0 per attempt, starting with ``started``.
The ingest's ``queued`` event belongs to the submission, not to a run, and
carries ``attempt = 0, seq = 0`` so that it never collides with a run's events.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.jobs import Priority
from schemas.rules import SUBMISSION_ATTEMPT


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    TIMEOUT = "timeout"
    PROVIDER = "provider"
    INVALID_REQUEST = "invalid_request"
    INVALID_OUTPUT = "invalid_output"
    """The model's output breaks what the job asked (``response_format=json``); not retried."""
    INVALID_COMMAND = "invalid_command"
    """The job's command on a job topic cannot be read; it went to the DLQ."""
    INTERNAL = "internal"
    BUDGET = "budget"
    """The tenant's USD budget ran out while the job streamed: stopped at the cap, not
    retried; its tokens so far are kept and billed (``usage``, ``cost_usd``)."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.JobEvent/1"] = Field(
        default="tokenrelay.JobEvent/1", alias="schema"
    )
    job_id: str
    attempt: int = Field(
        ge=SUBMISSION_ATTEMPT, description="1-based run number; 0 for the submission."
    )
    seq: int = Field(ge=0, description="0-based position within the attempt.")
    ts: int = Field(description="Producer time, microseconds since the Unix epoch.")
    worker_id: str
    tenant: str


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


class Percentiles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50: float
    p90: float
    p99: float


class Queued(_Event):
    type: Literal["queued"] = "queued"
    priority: Priority
    model: str
    provider: str
    batch_id: str | None = None
    estimated_cost_usd: float | None = Field(
        default=None, description="Before running: the prompt's estimated tokens and max_tokens."
    )
    max_tokens: int | None = Field(
        default=None,
        description="The most tokens the job may stream: its `max_tokens`, or the fake "
        "provider's default; None when the model decides.",
    )


class Started(_Event):
    type: Literal["started"] = "started"
    model: str
    provider: str
    queue_wait_ms: float


class Token(_Event):
    type: Literal["token"] = "token"
    text: str
    index: int = Field(
        ge=1, description="How many tokens this attempt has sent, this one included."
    )


class Retrying(_Event):
    type: Literal["retrying"] = "retrying"
    error_kind: ErrorKind
    message: str
    not_before: int
    next_attempt: int


class Completed(_Event):
    type: Literal["completed"] = "completed"
    content: str
    parsed: Any = None
    finish_reason: str | None
    usage: Usage
    cost_usd: float
    ttft_ms: float | None
    itl_ms: Percentiles | None = Field(
        default=None, description="Inter-token latency of this attempt; None below two tokens."
    )
    duration_ms: float
    tokens_per_s: float
    tokens: int | None = Field(
        default=None, ge=0, description="Tokens this attempt streamed before it ended."
    )


class Failed(_Event):
    type: Literal["failed"] = "failed"
    error_kind: ErrorKind
    message: str
    retryable: bool
    retry_after_s: float | None = Field(
        default=None, description="How long the provider asked to wait, when it said."
    )
    tokens: int | None = Field(
        default=None, ge=0, description="Tokens this attempt streamed before it ended."
    )
    usage: Usage | None = Field(
        default=None, description="What the attempt used and is billed for, when it is billed "
        "(a `budget` stop)."
    )
    cost_usd: float | None = Field(default=None, description="What `usage` costs.")


class Cancelled(_Event):
    type: Literal["cancelled"] = "cancelled"
    by: str
    reason: str | None = None
    tokens: int | None = Field(
        default=None, ge=0, description="Tokens this attempt streamed before it ended."
    )


JobEvent = Annotated[
    Queued | Started | Token | Retrying | Completed | Failed | Cancelled,
    Field(discriminator="type"),
]

_adapter: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def parse_event(data: bytes | str | dict[str, Any]) -> JobEvent:
    """Validate one event from JSON bytes, text or a decoded dict."""
    if isinstance(data, dict):
        return _adapter.validate_python(data)
    return _adapter.validate_json(data)


def event_json_schema() -> dict[str, Any]:
    return _adapter.json_schema(by_alias=True)
