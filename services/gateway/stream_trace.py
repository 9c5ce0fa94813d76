"""The gateway's span of one stream, in the trace of the job it delivers.

The span's parent is the attempt whose events the stream carried last (their
record headers hold the worker's span), so one trace reads: submit → run →
stream. Its start is the stream's start; it is made when the stream ends, once
that parent is known. Untraced jobs (no headers) make no span.
"""

from __future__ import annotations

import time

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from services.core import tracing
from services.gateway.delivery import Write
from services.gateway.stream_item import StreamItem


class StreamSpan:
    __slots__ = ("_began_ns", "_last", "_parent", "_run_parent", "_sent", "job_id", "transport")

    def __init__(self, job_id: str, transport: str) -> None:
        self.job_id, self.transport = job_id, transport
        self._began_ns = time.time_ns()
        self._parent: Context | None = None
        self._run_parent = False
        self._sent = 0
        self._last = ""

    def wrap(self, write: Write) -> Write:
        async def traced(batch: list[StreamItem]) -> None:
            await write(batch)
            self.saw(batch)

        return traced

    def saw(self, batch: list[StreamItem]) -> None:
        self._sent += len(batch)
        for item in batch:
            self._last = item.type
            if item.headers and (item.attempt > 0 or not self._run_parent):
                context = tracing.extract(item.headers)
                if context is not None:
                    self._parent, self._run_parent = context, item.attempt > 0

    def end(self, outcome: str) -> None:
        if self._parent is None:
            return
        span = tracing.TRACER.start_span(
            "stream job events",
            context=self._parent,
            kind=SpanKind.CONSUMER,
            start_time=self._began_ns,
            attributes={
                "tokenrelay.job_id": self.job_id,
                "tokenrelay.transport": self.transport,
                "tokenrelay.events_sent": self._sent,
                "tokenrelay.last_event": self._last,
                "tokenrelay.outcome": outcome,
            },
        )
        span.end()
