"""``GET /v1/jobs/{id}/events`` (SSE) and ``WS /v1/jobs/{id}/ws``: a job's events, live.

Each event's id is its Kafka offset, so ``Last-Event-ID`` (SSE header, or the
``last_event_id`` query parameter for both) resumes after it with nothing
twice. A watcher without a cursor gets the job's current attempt from its
start, then live; a finished job replays and closes (SSE: after the terminal
event; a resume from the terminal event answers 204, which tells EventSource to
stop reconnecting; websocket: close code 1000). ``?token=`` takes the stream
token that ``POST /v1/jobs`` returned, for clients that cannot send headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, Header, Query, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import Receive, Scope, Send

from services.core.access import API_KEY, BEARER, STREAM_TOKEN, Access
from services.core.after_response import continue_after
from services.core.auth import Principal
from services.core.cors import origin_refused, websocket_origin_allowed
from services.core.errors import ApiError
from services.core.http import JsonResponse, StrictJsonRoute, error_body
from services.core.ids import is_issued_id
from services.core.metrics import EVENTS_SENT, STREAMS_ENDED, STREAMS_OPEN
from services.core.openapi import error_responses
from services.core.path_ids import JobId, not_found
from services.core.runtime import Runtime
from services.gateway.delivery import (
    ClientGoneError,
    Outcome,
    Write,
    deliver,
    leave_incomplete,
)
from services.gateway.sse import (
    HEARTBEAT,
    LAST_EVENT_ID_PATTERN,
    parse_last_event_id,
    retry_hint,
)
from services.gateway.stream_item import StreamItem
from services.gateway.stream_trace import StreamSpan
from services.gateway.watch import JobEndedError, Plan, Watches

log = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
WS_CLOSE_TIMEOUT_S = 5.0
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": LAST_EVENT_ID_PATTERN},
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/JobEvent"},
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""One event of the stream (OpenAPI 3.2's ``itemSchema``); ``JobEvent`` is the topic's schema."""
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The job's events: `id:` (its offset), `event:` (its type), `data:` "
        "(the event as JSON), until its terminal event; an idle stream carries a comment "
        "(`: keep-alive`) every TOKENRELAY_STREAM_HEARTBEAT_S.",
        "content": {"text/event-stream": {"itemSchema": SSE_EVENT}},
    },
    204: {"description": "Resumed from the job's terminal event: nothing more will come."},
    **error_responses(400, 401, 404, 409, 422, 503, explicit=True),
}


def _caller(
    access: Access, headers: Mapping[str, str], job_id: str, token: str | None
) -> Principal:
    """The API key in the headers, else the stream token (scoped to this job).

    Every credential sent must be valid: a wrong token is a 401 even beside a good key.
    """
    has_key = "authorization" in headers or "x-api-key" in headers
    by_token = access.from_stream_token(token, job_id) if token else None
    if has_key or by_token is None:
        return access.from_headers(headers)
    return by_token


def _cursor(value: str | None) -> int | None:
    try:
        return parse_last_event_id(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc), "Last-Event-ID") from exc


async def events_response(
    access: Access,
    watches: Watches,
    job_id: str,
    headers: Mapping[str, str],
    token: str | None,
    cursor: str | None,
) -> Response:
    """The answer to ``GET /v1/jobs/{job_id}/events`` once its parameters are well formed:
    401 for a wrong credential, 422 for an offset out of range, 204 after a terminal
    event, else the stream (``lean_events`` and the documented route both end here)."""
    who = _caller(access, headers, job_id, token)
    after = _cursor(cursor)
    try:
        plan = await watches.plan(job_id, who, after)
    except JobEndedError:
        return Response(status_code=204)
    return SseStream(watches, plan)


def make_router(rt: Runtime, watches: Watches) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)

    @router.get(
        "/jobs/{job_id}/events",
        status_code=200,
        response_model=None,
        response_class=SseStream,
        responses=SSE_RESPONSES,
    )
    async def job_events(
        job_id: JobId,
        request: Request,
        token: str | None = Security(STREAM_TOKEN),
        _bearer: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
        _key: str | None = Security(API_KEY),
        last_event_id: str | None = Query(
            default=None,
            pattern=LAST_EVENT_ID_PATTERN,
            description="Resume after this event id (an offset).",
        ),
        last_event_id_header: str | None = Header(
            default=None,
            alias="Last-Event-ID",
            pattern=LAST_EVENT_ID_PATTERN,
            description="Resume after this event id; EventSource sends it on reconnect.",
        ),
    ) -> Response:
        # Served by ``lean_events`` (tried first): this signature is its OpenAPI, and this
        # route answers the same (tests/integration/test_lean_routes_agree.py).
        cursor = last_event_id_header or last_event_id
        return await events_response(rt.access, watches, job_id, request.headers, token, cursor)

    @router.websocket("/jobs/{job_id}/ws")
    async def job_ws(
        websocket: WebSocket,
        job_id: str,
        token: str | None = Query(default=None, max_length=500),
        last_event_id: str | None = Query(default=None, max_length=30),
    ) -> None:
        try:
            if not websocket_origin_allowed(rt.settings.cors_origin_list, websocket.headers):
                raise origin_refused()
            if not is_issued_id(job_id):
                raise not_found("job", job_id)
            who = _caller(rt.access, websocket.headers, job_id, token)
            plan = await watches.plan(job_id, who, _cursor(last_event_id))
        except ApiError as exc:
            body = error_body(exc.code, exc.message, exc.field)
            await websocket.send_denial_response(JsonResponse(body, status_code=exc.status))
            return
        except JobEndedError:
            await websocket.accept()
            await websocket.close(1000, "the job ended")
            return
        await websocket.accept()
        await _serve_websocket(websocket, watches, plan)

    return router


class SseStream(Response):
    """The ASGI response of one SSE stream.

    Its start goes through the middleware stack like any answer's; the events
    follow once the stack returned (``continue_after``), so an idle stream holds
    no middleware's frame.
    """

    media_type = "text/event-stream"

    def __init__(self, watches: Watches, plan: Plan) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self._watches = watches
        self._plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": retry_hint(), "more_body": True})
        # The stream needs neither this response nor the frames of the stack that sent it.
        rest = partial(_sse_events, self._watches, self._plan, receive, send)
        if not continue_after(scope, rest):
            await rest()


async def _sse_events(watches: Watches, plan: Plan, receive: Receive, send: Send) -> None:
    """The job's events after the stream's start, until the stream ends."""

    async def write(batch: list[StreamItem]) -> None:
        body = b"".join(item.sse for item in batch) if batch else HEARTBEAT
        await send({"type": "http.response.body", "body": body, "more_body": True})
        EVENTS_SENT.inc(len(batch))

    await sse_body("sse", plan, watches, write, receive, send)


async def sse_body(
    transport: str, plan: Plan, watches: Watches, write: Write, receive: Receive, send: Send
) -> None:
    """The body of an SSE answer whose headers are sent: the job's events until it ends, then
    the last chunk; a stream cut off or failed closes without it, so the client sees it broke
    (and resumes with its last id, or re-attaches by job id)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    cut = asyncio.get_running_loop().create_future()
    outcome = await delivered(transport, plan, watches, write, disconnected(), cut)
    if outcome is Outcome.ENDED:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif outcome is not Outcome.GONE:
        leave_incomplete()  # the connection closes without the last chunk: the client resumes


async def _serve_websocket(websocket: WebSocket, watches: Watches, plan: Plan) -> None:
    async def write(batch: list[StreamItem]) -> None:
        try:
            for item in batch:
                await websocket.send_text(item.ws)
        except WebSocketDisconnect as exc:
            raise ClientGoneError from exc
        EVENTS_SENT.inc(len(batch))

    async def disconnected() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    cut = asyncio.get_running_loop().create_future()
    outcome = await delivered("ws", plan, watches, write, disconnected(), cut)
    if outcome is Outcome.GONE:
        return
    code, reason = {
        Outcome.ENDED: (1000, "the job ended"),
        Outcome.CUT: (1013, "too slow: resume with last_event_id"),
        Outcome.FAILED: (1011, "cannot read the job's events: resume with last_event_id"),
    }[outcome]
    try:
        await asyncio.wait_for(websocket.close(code, reason), WS_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.info("websocket of job %s did not take its close frame", plan.job_id)


async def delivered(
    transport: str,
    plan: Plan,
    watches: Watches,
    write: Write,
    disconnected: Awaitable[None],
    cut: asyncio.Future[None],
) -> Outcome:
    STREAMS_OPEN.labels(transport).inc()
    span = StreamSpan(plan.job_id, transport)
    outcome = Outcome.FAILED
    try:
        outcome = await deliver(watches.events(plan, cut), span.wrap(write), disconnected, cut)
    finally:
        STREAMS_OPEN.labels(transport).dec()
        span.end(outcome.value)
    STREAMS_ENDED.labels(transport, outcome.value).inc()
    if outcome is Outcome.CUT:
        log.info("cut off a slow %s client of job %s", transport, plan.job_id)
    return outcome
