"""What ``tokenrelay.jobs.control`` carries: instructions about jobs that already exist.

Every worker reads the whole topic (it is small: one record per instruction,
kept for the tokens' retention), so a job cancelled while queued is known to
whichever worker dequeues it later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.Control/1"] = Field(default="tokenrelay.Control/1", alias="schema")
    job_id: str
    ts: int = Field(description="Microseconds since the Unix epoch.")


class Cancel(_Control):
    """Stop the job: a running stream is closed, a queued job never starts."""

    type: Literal["cancel"] = "cancel"
    by: str = Field(description="The tenant that asked, or 'admin:<tenant>'.")
    reason: str | None = Field(default=None, max_length=1000)


Control = Cancel
"""One kind today; later kinds (retry, batch pause/resume) join as a union on ``type``."""
