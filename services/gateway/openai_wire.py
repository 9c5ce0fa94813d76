"""OpenAI's chat completions wire format over tokenrelay jobs: pure functions.

``chat_request`` turns a ``POST /v1/chat/completions`` body into a ``JobRequest``
(or an ``OpenAIError`` naming the parameter); ``ChunkWriter`` turns the job's
events into ``chat.completion.chunk`` objects; ``completion`` builds the one
``chat.completion`` of a request without ``stream``; ``error_body`` is OpenAI's
error shape, ``{"error": {"message", "type", "param", "code"}}``.

What OpenAI's API has and a job cannot do is refused with a 400 naming the
parameter (``n`` above 1, tools and functions, log probabilities, audio,
``json_schema``), never ignored in silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import ErrorKind
from schemas.jobs import JobRequest, Priority, ResponseFormat

PRIORITY_HEADER = "x-tokenrelay-priority"
JOB_ID_HEADER = "x-tokenrelay-job-id"

UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)
"""Parameters a tokenrelay job cannot honour: refused when given a value."""
IGNORED = ("user", "store", "metadata", "service_tier", "parallel_tool_calls", "stream_options")
"""Parameters accepted and not passed on (``stream_options`` is read here)."""
PASSED_ON = ("top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "logit_bias")
"""Sampling parameters sent to an OpenAI-compatible provider as they came."""
KNOWN = frozenset(
    (
        "model",
        "messages",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "response_format",
        "n",
        *UNSUPPORTED,
        *IGNORED,
        *PASSED_ON,
    )
)


class OpenAIError(Exception):
    """An answer in OpenAI's error shape, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or error_type(status)


def error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
        415: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(err: OpenAIError) -> dict[str, Any]:
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise OpenAIError(
                    400, f"content parts of type {kind!r} are not supported", f"{where}[{i}]"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise OpenAIError(400, "content must be a string or a list of text parts", where)


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise OpenAIError(400, "messages must be a non-empty array", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise OpenAIError(400, "each message must be an object", f"messages[{i}]")
        role = m.get("role")
        role = "system" if role == "developer" else role
        if role not in ("system", "user", "assistant", "tool"):
            raise OpenAIError(400, f"unknown role {role!r}", f"messages[{i}].role")
        out.append({"role": role, "content": _text(m.get("content"), f"messages[{i}].content")})
    return out


def _response_format(raw: Any) -> ResponseFormat:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if raw is None or kind == "text":
        return ResponseFormat.TEXT
    if kind == "json_object":
        return ResponseFormat.JSON
    raise OpenAIError(400, f"response_format {kind!r} is not supported", "response_format")


def priority_of(header: str | None) -> Priority:
    if header is None:
        return Priority.NORMAL
    try:
        return Priority(header.strip().lower())
    except ValueError:
        names = ", ".join(p.value for p in Priority)
        raise OpenAIError(
            400, f"X-Tokenrelay-Priority must be one of {names}", PRIORITY_HEADER
        ) from None


def _refuse_what_a_job_cannot_do(body: Any) -> None:
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object", "body")
    for name in body:
        if name not in KNOWN:
            raise OpenAIError(400, f"unrecognized request argument: {name}", name)
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], {}):
            raise OpenAIError(400, f"{name} is not supported by tokenrelay", name)
    if body.get("n") not in (None, 1):
        raise OpenAIError(400, "n must be 1: a job has one answer", "n")


@dataclass(frozen=True)
class ChatRequest:
    job: JobRequest
    stream: bool
    include_usage: bool


def chat_request(body: Any, priority: Priority, provider: str) -> ChatRequest:
    """The job a chat completions body asks for; ``OpenAIError`` (400) naming what is wrong.

    ``provider`` runs it; an OpenAI-compatible one takes the sampling parameters of
    ``PASSED_ON`` as they came (the fake provider has none).
    """
    _refuse_what_a_job_cannot_do(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "model is required", "model")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise OpenAIError(400, "stream must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise OpenAIError(400, "stream_options must be an object", "stream_options")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    passed = {k: body[k] for k in PASSED_ON if body.get(k) is not None}
    passed = passed if provider == "openai" else {}
    fields = {
        "messages": _messages(body.get("messages")),
        "model": model,
        "provider": provider,
        "priority": priority,
        "max_tokens": limit,
        "temperature": body.get("temperature"),
        "response_format": _response_format(body.get("response_format")),
        "provider_options": passed,
        "job_type": "chat.completions",
    }
    try:
        job = JobRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        loc = "max_tokens" if loc == "max_tokens" and "max_completion_tokens" in body else loc
        raise OpenAIError(400, f"{loc}: {first['msg']}", loc) from exc
    return ChatRequest(job, stream, bool(options.get("include_usage")))


FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


def finish_reason(reason: str | None) -> str:
    return FINISH_REASONS.get(reason or "stop", "stop")


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    prompt = int((usage or {}).get("prompt_tokens", 0))
    done = int((usage or {}).get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


FAILED_STATUS = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.PROVIDER: 502,
    ErrorKind.AUTH: 502,
    ErrorKind.INVALID_OUTPUT: 502,
    ErrorKind.INVALID_COMMAND: 500,
    ErrorKind.INTERNAL: 500,
    ErrorKind.BUDGET: 402,
}
"""A failed job's status: the provider's refusal of the client's request is the client's 400;
the provider's other failures are a bad gateway (its credentials are not the client's)."""


KINDS = frozenset(k.value for k in ErrorKind)


def failure(event: dict[str, Any]) -> OpenAIError:
    """A ``failed`` or ``cancelled`` event as an OpenAI error."""
    if event["type"] == "cancelled":
        return OpenAIError(409, f"the job was cancelled by {event.get('by')}", None, "cancelled")
    kind = str(event.get("error_kind", "internal"))
    status = FAILED_STATUS.get(ErrorKind(kind), 500) if kind in KINDS else 500
    return OpenAIError(status, str(event.get("message", "the job failed")), None, kind)


@dataclass
class ChunkWriter:
    """The chunks of one streamed answer: one ``id``, ``created`` and ``model`` for all."""

    id: str
    created: int
    model: str
    include_usage: bool
    sent_role: bool = False
    sent_text: bool = False
    attempt: int | None = None
    """The job's attempt whose text this answer carries (set by its first token)."""
    over: bool = False
    """The answer has said its last word: its end, or an error."""
    _frames: list[bytes] = field(default_factory=list)

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def _delta(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]
        )

    def token(self, text: str) -> bytes:
        self.sent_text = True
        return self._delta({"content": text})

    def end(self, reason: str | None, usage: dict[str, Any] | None) -> bytes:
        """The last content chunk (with ``finish_reason``), the usage chunk if asked, [DONE]."""
        out = self._delta({}, finish_reason(reason))
        if self.include_usage:
            out += self._chunk([], usage=usage_of(usage))
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(err: OpenAIError) -> bytes:
        """An error mid-stream, as OpenAI sends it: an event whose data is the error body."""
        return b"data: " + orjson.dumps(error_body(err)) + b"\n\n"


def completion(id_: str, created: int, model: str, event: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` of a job's ``completed`` event."""
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": event["content"], "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(event.get("finish_reason")),
            }
        ],
        "usage": usage_of(event.get("usage")),
    }
