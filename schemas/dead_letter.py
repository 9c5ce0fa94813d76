"""What ``tokenrelay.jobs.dlq`` holds: a command that will not run, with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import JobCommand


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.DeadLetter/1"] = Field(
        default="tokenrelay.DeadLetter/1", alias="schema"
    )
    source: str = Field(description="topic[partition]@offset the record came from")
    error_kind: str
    error: str
    ts: int
    command: JobCommand | None = Field(default=None, description="The command, if it decoded.")
    raw: str | None = Field(default=None, description="The undecodable value, as text.")
