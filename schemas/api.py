"""The bodies the HTTP API answers with, so that its OpenAPI tells a generated client the truth.

Job, batch and queue state are the shapes of ``schemas.state``; what follows
are the answers of the routes that act (submit, cancel, pause…), the lists,
the analytics rows and the one error body every 4xx and 5xx carries. The
aggregator's views answer the public face in the same shapes (``JobList``,
``QueueList``, ``JobUnknown``, ``Removed``), written by the views and read by
``services.core.state_client``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Usage
from schemas.jobs import Priority
from schemas.state import JobState, PriorityQueue


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: invalid_request, not_found, …")
    message: str = Field(description="What went wrong and what to do, for people.")
    field: str | None = Field(
        default=None,
        description="The field at fault, as a path into the request: `messages[0].role`, "
        "a query parameter, a header (`Content-Type`) or `body`.",
    )


class ErrorBody(BaseModel):
    """Every error: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


class JobUnknown(ErrorBody):
    """The aggregator's 404 for a job it does not hold, with how far it has read: per
    partition of ``tokenrelay.tokens``, the offset of the last event it applied. A caller
    that knows where the job's first event is can tell a job not reached yet from one gone.
    """

    applied: dict[int, int]


class Removed(BaseModel):
    """The aggregator's answer to ``POST /clean``: finished jobs it removed."""

    removed: int


class JobAccepted(BaseModel):
    """``POST /v1/jobs``: the job is durable (its ``queued`` event and command are on Kafka)."""

    job_id: str
    status: Literal["queued"]
    priority: Priority
    stream_url: str = Field(description="Its SSE stream, relative to this API.")
    stream_token: str = Field(
        description="Reads this job's stream without an API key (`?token=`), for EventSource."
    )
    estimated_cost_usd: float | None


class BatchAccepted(BaseModel):
    """``POST /v1/batches``: every job of the batch is durable."""

    batch_id: str
    job_ids: list[str] = Field(description="In the order of the body's jobs (or lines).")


class JobInstruction(BaseModel):
    """``POST /v1/jobs/{id}/cancel``: the instruction is durable; workers act on it."""

    job_id: str
    status: Literal["cancelling"]


class JobRetried(BaseModel):
    """``POST /v1/jobs/{id}/retry``: the job is queued again as its next attempt."""

    job_id: str
    status: Literal["queued"]
    attempt: int


class BatchInstruction(BaseModel):
    """``POST /v1/batches/{id}/pause|resume|cancel``: the instruction is durable."""

    batch_id: str
    status: Literal["pausing", "resuming", "cancelling"]


class JobList(BaseModel):
    """``GET /v1/jobs``: newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    jobs: list[JobState]
    next_cursor: str | None


class JobResult(BaseModel):
    """``GET /v1/jobs/{id}/result``: what a finished job produced and what it cost."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: Literal["succeeded", "failed", "cancelled"]
    attempt: int
    content: str | None
    parsed: Any = None
    finish_reason: str | None
    usage: Usage | None
    cost_usd: float | None
    token_count: int
    ttft_ms: float | None
    duration_ms: float | None
    tokens_per_s: float | None
    queue_wait_ms: float | None
    queued_at: int | None
    started_at: int | None
    finished_at: int | None
    error_kind: str | None
    error_message: str | None
    cancelled_by: str | None


class QueueList(BaseModel):
    """``GET /v1/queues``: one line per priority, highest first."""

    queues: list[PriorityQueue]


class Cleaned(BaseModel):
    """``POST /v1/admin/clean``."""

    removed: int
    older_than_s: float


class CostRow(BaseModel):
    """One group of ``GET /v1/analytics/cost`` (the group's key is named after ``group_by``)."""

    model_config = ConfigDict(extra="allow")

    jobs: int
    succeeded: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ThroughputRow(BaseModel):
    """One interval of ``GET /v1/analytics/throughput``; empty intervals are zeros."""

    t: str = Field(description="The interval's start, ISO 8601 UTC.")
    jobs: int
    succeeded: int
    tokens: int
    jobs_per_s: float
    tokens_per_s: float


class Quantiles(BaseModel):
    p50: float | None
    p90: float | None
    p99: float | None


class LatencyRow(BaseModel):
    """One group of ``GET /v1/analytics/latency`` (the group's key is named after ``group_by``)."""

    model_config = ConfigDict(extra="allow")

    jobs: int
    ttft_ms: Quantiles
    itl_ms: Quantiles
    duration_ms: Quantiles


class CostRows(BaseModel):
    rows: list[CostRow]


class ThroughputRows(BaseModel):
    rows: list[ThroughputRow]


class LatencyRows(BaseModel):
    rows: list[LatencyRow]


class SqlAnswer(BaseModel):
    """``POST /v1/analytics/sql``: the columns' names, then the rows as lists of values."""

    columns: list[str]
    rows: list[list[Any]]


class Caller(BaseModel):
    """``GET /v1/me``: whom the API key speaks for."""

    tenant: str
    role: Literal["admin", "user"]


class StreamToken(BaseModel):
    """``POST /v1/jobs/{id}/stream-token``: a token that reads this job's events only."""

    job_id: str
    stream_token: str
    stream_url: str
    expires_in_s: int


class GroupMember(BaseModel):
    client_id: str
    host: str | None = Field(description="Where the member connects from; shown to admins only.")
    member_id: str
    partitions: dict[str, list[int]] = Field(description="Topic → the partitions assigned.")


class WorkerGroup(BaseModel):
    """``GET /v1/workers``: the workers' consumer group as the broker describes it."""

    group: str
    state: str
    members: list[GroupMember]


class DeadLetterEntry(BaseModel):
    partition: int
    offset: int
    job_id: str | None
    source: str
    error_kind: str
    error: str
    ts: int = Field(description="When it was dead-lettered, µs since the epoch.")
    command: dict[str, Any] | None = Field(description="The command, if it decoded.")
    raw: str | None = Field(description="The undecodable value, as text.")


class DeadLetters(BaseModel):
    """``GET /v1/admin/dead-letters``: the newest dead letters first."""

    dead_letters: list[DeadLetterEntry]


class CostReplayGroup(BaseModel):
    """What one group of a cost replay's jobs cost as recorded and under the replayed prices."""

    jobs: int
    prompt_tokens: int
    completion_tokens: int
    recorded_usd: float = Field(description="The sum of the jobs' recorded costs.")
    replayed_usd: float = Field(description="The sum of their costs under the replayed prices.")
    difference_usd: float = Field(description="`replayed_usd - recorded_usd`.")


class CostReplayModel(CostReplayGroup):
    model: str


class CostReplayTenant(CostReplayGroup):
    tenant: str


class CostReplay(CostReplayGroup):
    """``POST /v1/analytics/cost-replay``: the finished jobs of the window repriced, one
    ``cost_replays`` row each under ``replay_id``; dollars are exact to the nano-dollar
    (``Decimal(repr(x))``), and recorded costs are left as they were."""

    replay_id: str
    replayed_at: str = Field(description="When the replay ran, ISO 8601 UTC.")
    since: str | None = Field(description="The window's start, ISO 8601 UTC (None: the first).")
    until: str = Field(description="The window's end (excluded), ISO 8601 UTC.")
    unpriced_models: list[str] = Field(
        description="Models of the window that the price table does not price: they cost 0."
    )
    by_model: list[CostReplayModel]
    by_tenant: list[CostReplayTenant]
