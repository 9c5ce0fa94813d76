"""What a worker consumes from ``tokenrelay.jobs.<priority>``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.jobs import JobRequest


class JobCommand(BaseModel):
    """One attempt of a job to run. Key: ``job_id``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.JobCommand/1"] = Field(
        default="tokenrelay.JobCommand/1", alias="schema"
    )
    job_id: str
    tenant: str
    attempt: int = Field(default=1, ge=1)
    submitted_at: int = Field(description="Microseconds since the Unix epoch, at ingest.")
    not_before: int | None = Field(
        default=None, description="Do not start before this time (µs); used by retries."
    )
    batch_id: str | None = None
    provider: str
    model: str
    request: JobRequest
