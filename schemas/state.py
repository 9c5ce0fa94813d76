"""The state of one job, as the aggregator keeps it and ``tokenrelay.job-state`` publishes it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ErrorKind, Usage
from schemas.jobs import Priority


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.JobState/1"] = Field(
        default="tokenrelay.JobState/1", alias="schema"
    )
    job_id: str
    tenant: str
    status: JobStatus
    priority: Priority
    model: str
    provider: str
    batch_id: str | None = None
    attempt: int = 0
    token_count: int = 0
    queued_at: int | None = None
    started_at: int | None = None
    first_token_at: int | None = None
    finished_at: int | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    partition: int | None = Field(default=None, description="Partition of the job's events.")
    attempt_start_offset: int | None = Field(
        default=None, description="Offset of the current attempt's first event (resume cursor)."
    )
    updated_at: int
