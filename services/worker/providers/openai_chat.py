"""The ``openai`` provider: OpenAI's chat completions (or any compatible server), streamed.

Uses the real SDK's ``AsyncOpenAI`` with ``stream_options={"include_usage": True}``
so the last chunk carries usage. The SDK's own retries are off: the worker owns
retries, so every error maps to one ``ErrorKind`` here, with ``Retry-After``
kept for rate limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
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
        try:
            stream = await self._client.chat.completions.create(**self._params(command))
        except Exception as exc:  # every SDK error becomes a typed ProviderError
            raise classify(exc) from exc
        finish: str | None = None
        usage: Usage | None = None
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens,
                        completion_tokens=chunk.usage.completion_tokens,
                    )
                for choice in chunk.choices:
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
                    if choice.delta.content:
                        yield Chunk(text=choice.delta.content)
        except ProviderError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
        finally:
            await stream.close()
        if finish is None:
            raise ProviderError(ErrorKind.PROVIDER, "the stream ended without a finish_reason")
        yield Chunk(finish_reason=finish, usage=usage)

    async def close(self) -> None:
        await self._client.close()
