"""The shape of a per-model budget in ``TOKENRELAY_MODEL_LIMITS`` (JSON: model → limit)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: float | None = Field(default=None, gt=0, description="Requests per minute.")
    tpm: float | None = Field(default=None, gt=0, description="Tokens per minute.")
