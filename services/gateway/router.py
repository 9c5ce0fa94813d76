"""``GET /v1/jobs/{id}/events``: a job's events as server-sent events.

Each event's ``id`` is its Kafka offset, so ``Last-Event-ID`` (or the
``last_event_id`` query parameter) resumes after it with nothing twice. A
watcher without a cursor gets the job from its first event, then live; a
finished job replays and closes. ``?token=`` takes the stream token that
``POST /v1/jobs`` returned, for EventSource, which cannot send headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from schemas.events import JobEvent
from services.core.auth import Principal
from services.core.errors import ApiError
from services.core.job_log import JobEventReader, Located, TopicPartitions
from services.core.metrics import EVENTS_SENT, STREAMS_OPEN
from services.core.runtime import Runtime
from services.gateway.sse import HEARTBEAT, frame, parse_last_event_id, retry_hint

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
STREAM_BUFFER = 4096
"""Events a stream may hold for a client that reads slower than the job writes."""

Item = tuple[int, JobEvent, bytes] | None
"""(offset, event, raw JSON) of one event; None once the job's stream has ended."""


def make_router(rt: Runtime, heartbeat_s: float = HEARTBEAT_S) -> APIRouter:
    router = APIRouter(prefix="/v1")
    topic = rt.settings.topics.tokens
    partitions = TopicPartitions(rt.admin)

    async def tokens_partitions() -> int:
        return await partitions.count(topic)

    def caller(request: Request, job_id: str, token: str | None) -> Principal:
        has_key = "authorization" in request.headers or "x-api-key" in request.headers
        if token and not has_key:
            return rt.access.from_stream_token(token, job_id)
        return rt.access.principal(request)

    @router.get("/jobs/{job_id}/events", response_model=None)
    async def job_events(
        job_id: str,
        request: Request,
        token: str | None = Query(default=None, max_length=500),
        last_event_id: str | None = Query(default=None, max_length=30),
        last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        who = caller(request, job_id, token)
        try:
            after = parse_last_event_id(last_event_id_header or last_event_id)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", str(exc), "Last-Event-ID") from exc
        reader = JobEventReader(
            rt.settings.kafka_bootstrap, topic, await tokens_partitions(), job_id
        )
        await reader.__aenter__()
        try:
            located = await reader.locate()
        except BaseException:
            await reader.__aexit__()
            raise
        if located is None or not who.may_read(located.first.tenant):
            await reader.__aexit__()
            raise ApiError(404, "not_found", f"no job {job_id}", "job_id")
        return StreamingResponse(
            _sse(reader, located, after, heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


async def _pump(
    reader: JobEventReader, located: Located, after: int | None, queue: asyncio.Queue[Item]
) -> None:
    async for item in reader.events(located, after):
        await queue.put(item)
    await queue.put(None)


async def _sse(
    reader: JobEventReader, located: Located, after: int | None, heartbeat_s: float
) -> AsyncIterator[bytes]:
    """SSE bytes: the retry hint, then events (several per write when they arrive together)."""
    queue: asyncio.Queue[Item] = asyncio.Queue(STREAM_BUFFER)
    pump = asyncio.create_task(_pump(reader, located, after, queue))
    STREAMS_OPEN.inc()
    try:
        yield retry_hint()
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                if pump.done():
                    pump.result()
                yield HEARTBEAT
                continue
            items = [item]
            while not queue.empty():
                items.append(queue.get_nowait())
            out, done = _frames(items)
            if out:
                yield out
            if done:
                return
    finally:
        STREAMS_OPEN.dec()
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await reader.__aexit__()


def _frames(items: list[Item]) -> tuple[bytes, bool]:
    """The SSE bytes of ``items``, and whether the stream ends with them."""
    chunks: list[bytes] = []
    for item in items:
        if item is None:
            EVENTS_SENT.inc(len(chunks))
            return b"".join(chunks), True
        offset, event, raw = item
        chunks.append(frame(offset, event.type, raw))
    EVENTS_SENT.inc(len(chunks))
    return b"".join(chunks), False
