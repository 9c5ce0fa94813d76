"""The ``openai`` provider: OpenAI's chat completions (or any compatible server), streamed.

Uses the real SDK's ``AsyncOpenAI`` with ``stream_options={"include_usage": True}``
so the last chunk carries usage. The SDK's own retries are off: the worker owns
retries, so every error maps to one ``ErrorKind`` here, with ``Retry-After``
kept for rate limits.

The SDK makes the request, authenticates and turns an error status into its
typed exception; the body of a stream that started is read here
(``ChatStream``): one orjson parse per event into the two or three fields we
use, rather than an SDK model per chunk through a line decoder — that was most
of the worker's CPU per token on this path (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import openai
import orjson
from openai import AsyncOpenAI

from schemas.commands import JobCommand
from schemas.events import ErrorKind, Usage
from schemas.jobs import ResponseFormat
from services.worker.providers.base import Chunk, ProviderError


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``retry-after-ms`` or ``Retry-After`` (seconds) from a response, if present."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def classify(exc: Exception) -> ProviderError:
    """Map an SDK error to a ``ProviderError`` of the right kind.

    The SDK wraps transport failures (refused, reset, a body cut mid-stream) in
    ``APIConnectionError`` and time-outs in its subclass ``APITimeoutError``.
    """
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(
            ErrorKind.RATE_LIMITED, str(exc), retry_after_seconds(exc.response.headers)
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError(ErrorKind.AUTH, str(exc))
    if isinstance(
        exc, openai.BadRequestError | openai.NotFoundError | openai.UnprocessableEntityError
    ):
        return ProviderError(ErrorKind.INVALID_REQUEST, str(exc))
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, str(exc) or "the provider timed out")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            ErrorKind.PROVIDER,
            f"HTTP {exc.status_code}: {exc.message}",
            retry_after_seconds(exc.response.headers),
        )
    if isinstance(exc, openai.APIError):
        return ProviderError(ErrorKind.PROVIDER, f"{type(exc).__name__}: {exc}")
    return ProviderError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")


class ChatStream:
    """OpenAI's chat-completion event stream read from its bytes: text deltas out, and the
    finish reason and usage kept. A pure parser: ``feed`` bytes as they come."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.done = False
        self._line = b""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[str]:
        """The text deltas completed by ``data``; raises ``ProviderError`` on an error event
        or an event that is not JSON."""
        lines = (self._line + data).split(b"\n")
        self._line = lines.pop()
        texts: list[str] = []
        for raw in lines:
            line = raw.rstrip(b"\r")
            if line:
                if line.startswith(b"data:"):
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                continue  # comments, event names, ids: nothing we use
            if self._data:
                self._event(b"\n".join(self._data), texts)
                self._data.clear()
        return texts

    def _event(self, payload: bytes, texts: list[str]) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(ErrorKind.PROVIDER, f"an unreadable stream event: {exc}") from exc
        if event.get("error"):
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ProviderError(ErrorKind.PROVIDER, f"error in the stream: {message}")
        usage = event.get("usage")
        if usage:
            self.usage = Usage(
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]
            )
        for choice in event.get("choices") or ():
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
            text = (choice.get("delta") or {}).get("content")
            if text:
                texts.append(text)


class OpenAIProvider:
    name = "openai"

    def __init__(self, api_key: str, base_url: str | None, timeout_s: float = 600.0) -> None:
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    def _params(self, command: JobCommand) -> dict[str, Any]:
        req = command.request
        params: dict[str, Any] = {
            "model": command.model,
            "messages": [m.model_dump() for m in req.chat_messages()],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if req.max_tokens is not None:
            params["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            params["temperature"] = req.temperature
        if req.response_format is ResponseFormat.JSON:
            params["response_format"] = {"type": "json_object"}
        extra = {k: v for k, v in req.provider_options.items() if k not in params}
        if extra:
            params["extra_body"] = extra
        return params

    async def stream(self, command: JobCommand) -> AsyncIterator[Chunk]:
        request = self._client.chat.completions.with_streaming_response.create
        reader = ChatStream()
        try:
            async with request(**self._params(command)) as response:
                async for data in response.iter_bytes():
                    for text in reader.feed(data):
                        yield Chunk(text=text)
        except ProviderError:
            raise
        except httpx2.TimeoutException as exc:  # the body stalled past the client's timeout
            raise ProviderError(ErrorKind.TIMEOUT, f"{type(exc).__name__}: {exc}") from exc
        except httpx2.TransportError as exc:  # reset, a body cut mid-stream
            raise ProviderError(ErrorKind.PROVIDER, f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # every SDK error becomes a typed ProviderError
            raise classify(exc) from exc
        if reader.finish_reason is None:
            raise ProviderError(ErrorKind.PROVIDER, "the stream ended without a finish_reason")
        yield Chunk(finish_reason=reader.finish_reason, usage=reader.usage)

    async def close(self) -> None:
        await self._client.close()
