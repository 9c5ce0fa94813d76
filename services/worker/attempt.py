"""One attempt of one job: the provider's stream in, the attempt's events out, in order.

``run_attempt`` knows nothing of Kafka: it calls ``emit`` for ``started`` and
each ``token`` and returns the terminal event, so that unit tests drive it with
a list and the runner with the producer and its transactions. Its events are
built (and numbered from ``seq`` 0, ``started``) by ``events.AttemptEvents``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.commands import JobCommand
from schemas.control import Cancel, CancelBatch
from schemas.events import (
    ErrorKind,
    JobEvent,
    Percentiles,
    Usage,
)
from schemas.jobs import ResponseFormat
from services.core.ids import now_us
from services.core.prices import Prices
from services.core.stats import percentile
from services.worker.budget import BudgetMeter
from services.worker.events import AttemptEvents
from services.worker.providers.base import Provider, ProviderError

log = logging.getLogger(__name__)

Emit = Callable[[JobEvent], Awaitable[None]]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def inter_token_latency(arrivals: list[float]) -> Percentiles | None:
    """p50/p90/p99 of the gaps between consecutive tokens (seconds in, ms out)."""
    if len(arrivals) < 2:
        return None
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    return Percentiles(
        p50=_ms(percentile(gaps, 50)), p90=_ms(percentile(gaps, 90)), p99=_ms(percentile(gaps, 99))
    )


def _parse_json(content: str) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ProviderError(
            ErrorKind.INVALID_OUTPUT, f"response_format=json but the output is not JSON: {exc}"
        ) from exc


class _BudgetSpentError(Exception):
    """The next token would take the job past its tenant's budget."""


@dataclass
class _Progress:
    parts: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """When each token arrived (monotonic seconds)."""
    first: float | None = None
    finish: str | None = None
    usage: Usage | None = None


async def _stream(
    command: JobCommand,
    provider: Provider,
    emit: Emit,
    ev: AttemptEvents,
    out: _Progress,
    meter: BudgetMeter | None,
) -> None:
    async with asyncio.timeout(command.request.timeout_s):
        async with aclosing(provider.stream(command)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk.text:
                    if meter is not None:
                        if not meter.admits_next():
                            raise _BudgetSpentError
                        meter.count()
                    now = time.monotonic()
                    if out.first is None:
                        out.first = now
                    out.arrivals.append(now)
                    out.parts.append(chunk.text)
                    await emit(ev.token(chunk.text, len(out.parts)))
                if chunk.finish_reason is not None:
                    out.finish = chunk.finish_reason
                if chunk.usage is not None:
                    out.usage = chunk.usage


async def _until_cancelled(work: Awaitable[None], cancel: asyncio.Event) -> bool:
    """Run ``work``; True if ``cancel`` was set first (``work`` is then cancelled and closed)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return True
    task.result()
    return False


async def run_attempt(
    command: JobCommand,
    provider: Provider,
    emit: Emit,
    worker_id: str,
    cancel: asyncio.Event | None = None,
    cancelled_by: Callable[[], Cancel | CancelBatch | None] = lambda: None,
    prices: Prices | None = None,
    meter: BudgetMeter | None = None,
) -> JobEvent:
    """Run ``command`` once through ``provider``.

    ``started`` and every ``token`` go to ``emit``; the terminal event is returned,
    not emitted, since the caller publishes it together with the job's offset.
    Setting ``cancel`` closes the provider's stream and ends the attempt ``cancelled``.
    A completed attempt's cost comes from ``prices`` (0 without). With a ``meter``, the
    token that would pass the tenant's budget is not sent: the attempt ends ``failed``
    (kind ``budget``), billed for what it streamed (``budget.py``).
    """
    ev = AttemptEvents(command, worker_id)
    started_us = now_us()
    await emit(
        ev.started(
            command.model,
            provider.name,
            max(0.0, (started_us - queue_since_us(command)) / 1000),
        )
    )
    t0 = time.monotonic()
    progress = _Progress()
    if meter is not None and not meter.admits_prompt():
        return ev.failed(
            ErrorKind.BUDGET,
            f"not started: the prompt would cost more than the ${meter.may_spend} left of the "
            "tenant's budget",
            retryable=False,
            tokens=0,
            usage=Usage(prompt_tokens=0, completion_tokens=0),
            cost_usd=0.0,
        )
    try:
        work = _stream(command, provider, emit, ev, progress, meter)
        if await _until_cancelled(work, cancel or asyncio.Event()):
            return ev.cancelled(cancelled_by(), tokens=len(progress.parts))
        content = "".join(progress.parts)
        parsed = (
            _parse_json(content) if command.request.response_format is ResponseFormat.JSON else None
        )
    except TimeoutError:
        return ev.failed(
            ErrorKind.TIMEOUT,
            f"the job ran longer than timeout_s={command.request.timeout_s}",
            retryable=True,
            tokens=len(progress.parts),
        )
    except _BudgetSpentError:
        assert meter is not None
        spent = meter.spent()
        return ev.failed(
            ErrorKind.BUDGET,
            f"stopped at the tenant's budget after {meter.tokens} tokens: ${spent} spent of "
            f"${meter.may_spend} left when the job started",
            retryable=False,
            tokens=len(progress.parts),
            usage=meter.usage(),
            cost_usd=float(spent),
        )
    except ProviderError as exc:
        return ev.failed(
            exc.kind,
            exc.message,
            retryable=exc.retryable,
            retry_after_s=exc.retry_after_s,
            tokens=len(progress.parts),
        )
    duration = time.monotonic() - t0
    first, parts = progress.first, progress.parts
    usage = progress.usage or Usage(prompt_tokens=0, completion_tokens=len(parts))
    gen_time = duration - ((first - t0) if first is not None else 0.0)
    return ev.completed(
        content=content,
        parsed=parsed,
        finish_reason=progress.finish,
        usage=usage,
        cost_usd=(
            prices.cost_usd(command.model, usage.prompt_tokens, usage.completion_tokens)
            if prices is not None
            else 0.0
        ),
        ttft_ms=_ms(first - t0) if first is not None else None,
        itl_ms=inter_token_latency(progress.arrivals),
        duration_ms=_ms(duration),
        tokens_per_s=round(len(parts) / gen_time, 3) if gen_time > 0 else 0.0,
        tokens=len(parts),
    )


def queue_since_us(command: JobCommand) -> int:
    """When the job became runnable: its submission, or a retry's ``not_before``."""
    return max(command.submitted_at, command.not_before or 0)
