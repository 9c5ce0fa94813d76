"""One attempt of one job: the provider's stream in, the attempt's events out, in order.

``run_attempt`` knows nothing of Kafka: it calls ``emit`` for each event and
returns the terminal one, so that unit tests drive it with a list and the
runner with the producer. Events are numbered from ``seq`` 0 (``started``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from schemas.commands import JobCommand
from schemas.events import Completed, ErrorKind, Failed, JobEvent, Started, Token, Usage
from schemas.jobs import ResponseFormat
from services.core.ids import now_us
from services.worker.providers.base import Provider, ProviderError

log = logging.getLogger(__name__)

Emit = Callable[[JobEvent], Awaitable[None]]


class AttemptEvents:
    """Builds the events of one attempt with the shared fields and a running ``seq``."""

    def __init__(self, command: JobCommand, worker_id: str) -> None:
        self._common = {
            "job_id": command.job_id,
            "attempt": command.attempt,
            "worker_id": worker_id,
            "tenant": command.tenant,
        }
        self._seq = 0

    def fields(self) -> dict[str, Any]:
        out = {**self._common, "seq": self._seq, "ts": now_us()}
        self._seq += 1
        return out


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _parse_json(content: str) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ProviderError(
            ErrorKind.PROVIDER, f"response_format=json but the output is not JSON: {exc}"
        ) from exc


async def run_attempt(
    command: JobCommand, provider: Provider, emit: Emit, worker_id: str
) -> JobEvent:
    """Run ``command`` once through ``provider``; every event goes to ``emit``; returns the last."""
    ev = AttemptEvents(command, worker_id)
    started_us = now_us()
    await emit(
        Started(
            **ev.fields(),
            model=command.model,
            provider=provider.name,
            queue_wait_ms=max(0.0, (started_us - command.submitted_at) / 1000),
        )
    )
    t0 = time.monotonic()
    first: float | None = None
    parts: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    try:
        async with asyncio.timeout(command.request.timeout_s):
            async for chunk in provider.stream(command):
                if chunk.text:
                    if first is None:
                        first = time.monotonic()
                    parts.append(chunk.text)
                    await emit(Token(**ev.fields(), text=chunk.text, index=len(parts)))
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = chunk.usage
        content = "".join(parts)
        parsed = (
            _parse_json(content) if command.request.response_format is ResponseFormat.JSON else None
        )
    except TimeoutError:
        failed = Failed(
            **ev.fields(),
            error_kind=ErrorKind.TIMEOUT,
            retryable=True,
            message=f"the job ran longer than timeout_s={command.request.timeout_s}",
        )
        await emit(failed)
        return failed
    except ProviderError as exc:
        failed = Failed(
            **ev.fields(), error_kind=exc.kind, message=exc.message, retryable=exc.retryable
        )
        await emit(failed)
        return failed
    duration = time.monotonic() - t0
    usage = usage or Usage(prompt_tokens=0, completion_tokens=len(parts))
    gen_time = duration - ((first - t0) if first is not None else 0.0)
    completed = Completed(
        **ev.fields(),
        content=content,
        parsed=parsed,
        finish_reason=finish,
        usage=usage,
        cost_usd=0.0,
        ttft_ms=_ms(first - t0) if first is not None else None,
        duration_ms=_ms(duration),
        tokens_per_s=round(len(parts) / gen_time, 3) if gen_time > 0 else 0.0,
    )
    await emit(completed)
    return completed
