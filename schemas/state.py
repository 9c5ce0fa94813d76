"""The state of one job, as the aggregator keeps it and ``tokenrelay.job-state`` publishes it.

Also the shapes the aggregator answers with for batches and queues, which the
public API passes through unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ErrorKind, Queued, Usage
from schemas.jobs import Priority


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobState(BaseModel):
    """The latest state of a job; key ``job_id`` on ``tokenrelay.job-state``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.JobState/1"] = Field(
        default="tokenrelay.JobState/1", alias="schema"
    )
    job_id: str
    tenant: str
    status: JobStatus
    priority: Priority | None = Field(default=None, description="None if `queued` was not seen.")
    model: str | None = None
    provider: str | None = None
    batch_id: str | None = None
    attempt: int = Field(default=0, description="The current attempt; 0 until one starts.")
    seq: int = Field(default=0, description="The last `seq` applied within `attempt`.")
    submissions: int = Field(default=0, description="Admin retries so far (seq of `queued`).")
    token_count: int = 0
    max_tokens: int | None = Field(
        default=None, description="The most tokens it may stream, if known (`queued`)."
    )
    estimated_cost_usd: float | None = None
    queued_at: int | None = None
    started_at: int | None = None
    first_token_at: int | None = None
    finished_at: int | None = None
    queue_wait_ms: float | None = None
    retry_at: int | None = Field(default=None, description="`not_before` of the next attempt.")
    content: str | None = Field(default=None, description="The whole text, once succeeded.")
    parsed: Any = None
    finish_reason: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    tokens_per_s: float | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    cancelled_by: str | None = None
    partition: int | None = Field(default=None, description="Partition of the job's events.")
    attempt_start_offset: int | None = Field(
        default=None,
        description=(
            "Where a watcher without a cursor starts: the offset of the submission's `queued`"
            " event while its first attempt runs, else of the current attempt's first event."
        ),
    )
    updated_at: int = Field(description="`ts` of the last event applied (µs).")

    @classmethod
    def queued(cls, event: Queued, partition: int | None, offset: int | None = None) -> JobState:
        """The state of a job that has only been submitted."""
        return cls(
            job_id=event.job_id,
            tenant=event.tenant,
            status=JobStatus.QUEUED,
            priority=event.priority,
            model=event.model,
            provider=event.provider,
            batch_id=event.batch_id,
            estimated_cost_usd=event.estimated_cost_usd,
            max_tokens=event.max_tokens,
            submissions=event.seq,
            queued_at=event.ts,
            partition=partition,
            attempt_start_offset=offset,
            updated_at=event.ts,
        )


class StatusCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


BatchStatus = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]


class BatchSummary(BaseModel):
    """``GET /v1/batches/{id}``: `retrying` jobs count as queued."""

    batch_id: str
    tenant: str
    status: BatchStatus
    counts: StatusCounts
    total: int
    progress_pct: float
    eta_s: float | None
    cost_usd: float
    created_at: int | None
    finished_at: int | None


class PriorityQueue(BaseModel):
    """One priority's line in ``GET /v1/queues``."""

    priority: Priority
    queued: int = 0
    running: int = 0
    oldest_queued_at: int | None = None
    oldest_wait_s: float | None = None
    consumer_lag: int | None = Field(default=None, description="Unread commands, from the broker.")
