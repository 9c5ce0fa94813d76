"""What ``tokenrelay.jobs.control`` carries: instructions about jobs that already exist.

Every worker reads the whole topic (it is small: one record per instruction,
kept for the tokens' retention), so an instruction given while a job is queued
is known to whichever worker dequeues the job later. Job instructions are keyed
by ``job_id``, batch instructions by ``batch_id``, so each batch's pause and
resume stay in order on one partition.

A cancel applies to the commands submitted before it (``JobCommand.submitted_at
<= ts``): an admin retry, submitted later, runs even though the job was
cancelled once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.Control/1"] = Field(default="tokenrelay.Control/1", alias="schema")
    ts: int = Field(description="Microseconds since the Unix epoch.")
    by: str = Field(description="The tenant that asked, or 'admin:<tenant>'.")


class Cancel(_Control):
    """Stop the job: a running stream is closed, a queued job never starts."""

    type: Literal["cancel"] = "cancel"
    job_id: str
    reason: str | None = Field(default=None, max_length=1000)


class PauseBatch(_Control):
    """Hold the batch's jobs that have not started; running ones finish."""

    type: Literal["pause_batch"] = "pause_batch"
    batch_id: str


class ResumeBatch(_Control):
    """Release the batch's held jobs."""

    type: Literal["resume_batch"] = "resume_batch"
    batch_id: str


class CancelBatch(_Control):
    """Cancel every job of the batch submitted before ``ts`` that has not ended."""

    type: Literal["cancel_batch"] = "cancel_batch"
    batch_id: str
    reason: str | None = Field(default=None, max_length=1000)


Control = Annotated[Cancel | PauseBatch | ResumeBatch | CancelBatch, Field(discriminator="type")]

_adapter: TypeAdapter[Control] = TypeAdapter(Control)


def control_key(control: Control) -> str:
    """The record key: the job's id, or the batch's."""
    return control.job_id if isinstance(control, Cancel) else control.batch_id


def parse_control(data: bytes | str) -> Control:
    return _adapter.validate_json(data)


def control_json_schema() -> dict[str, Any]:
    return _adapter.json_schema(by_alias=True)
