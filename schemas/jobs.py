"""What a client asks for: the body of ``POST /v1/jobs``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.limits import MAX_FREEFORM_BYTES, json_problem

MAX_PROMPT_CHARS = 1_000_000
"""A prompt (or all messages together) longer than this is refused with 422."""


class Priority(StrEnum):
    """Job priority; each has its own topic, and workers drain higher first."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class ResponseFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Message(BaseModel):
    """One chat message, as in OpenAI's chat completions API."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


_ONE_INPUT: list[JsonValue] = [
    {
        "required": ["prompt"],
        "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}},
    },
    {
        "required": ["messages"],
        "properties": {"messages": {"type": "array"}, "prompt": {"type": "null"}},
    },
]
"""Exactly one of ``prompt`` and ``messages`` holds a value (the other is absent or null)."""


class JobRequest(BaseModel):
    """A job as submitted. Exactly one of ``prompt`` and ``messages`` is given."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": _ONE_INPUT})

    prompt: str | None = Field(
        default=None, min_length=1, max_length=MAX_PROMPT_CHARS, description="The user's text."
    )
    messages: list[Message] | None = Field(
        default=None, min_length=1, max_length=1000, description="A chat, as OpenAI's API takes it."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Model name; defaults to the provider's default model.",
    )
    provider: Literal["openai", "fake"] | None = Field(
        default=None, description="Defaults to openai when OPENAI_API_KEY is set, else fake."
    )
    priority: Priority = Priority.NORMAL
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    system: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    response_format: ResponseFormat = ResponseFormat.TEXT
    timeout_s: float = Field(default=1800, gt=0, le=86_400, strict=True)
    max_attempts: int = Field(default=3, ge=1, le=50, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict)
    job_type: str | None = Field(default=None, max_length=200)
    provider_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", "provider_options")
    @classmethod
    def _plain_json(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Values every reader of the topics reads alike (``schemas.limits``), and not too many."""
        if (found := json_problem(value, str(info.field_name), depth=2)) is not None:
            where, problem = found
            raise ValueError(f"{where}: {problem}")
        size = len(orjson.dumps(value))
        if size > MAX_FREEFORM_BYTES:
            raise ValueError(f"{size} bytes as JSON; at most {MAX_FREEFORM_BYTES}")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> JobRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' and 'messages'")
        total = len(self.prompt or "") + sum(len(m.content) for m in self.messages or [])
        total += len(self.system or "")
        if total > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
        return self

    def chat_messages(self) -> list[Message]:
        """The conversation to send to a chat model, with ``system`` first."""
        out: list[Message] = []
        if self.system is not None:
            out.append(Message(role="system", content=self.system))
        if self.messages is not None:
            out.extend(self.messages)
        else:
            out.append(Message(role="user", content=self.prompt or ""))
        return out


FAKE_DEFAULT_MAX_TOKENS = 64
"""Tokens the ``fake`` provider sends when a job sets no ``max_tokens``."""


class FakeProviderOptions(BaseModel):
    """``provider_options`` of the ``fake`` provider, to rehearse every path without a network."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_s: float | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Pace; 0 sends as fast as it can. Default: the setting.",
    )
    fail_with: (
        Literal["rate_limited", "auth", "timeout", "provider", "invalid_request", "internal"] | None
    ) = None
    fail_after: int = Field(default=0, ge=0, strict=True, description="Tokens sent before failing.")
    fail_attempts: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description="Fail only attempts up to this number (then succeed); default: every attempt.",
    )
