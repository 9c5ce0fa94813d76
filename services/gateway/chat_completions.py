"""``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI's API over tokenrelay jobs.

Each request becomes a job like any other — queued at the priority of
``X-Tokenrelay-Priority`` (default ``normal``), rate-limited, priced, retried,
recorded and watchable — and its answer speaks OpenAI's wire format
(``openai_wire``). The stream is the job's own events, read from the gateway's
fan-out as ``GET /v1/jobs/{id}/events`` reads them: tokens as content deltas,
heartbeats as SSE comments, the end as ``finish_reason``, the usage chunk and
``[DONE]``, a failure as an error event. Every answer names the job in
``x-tokenrelay-job-id``, so a client whose connection broke re-attaches through
``/v1/jobs/{id}/events`` instead of asking again; ``Idempotency-Key`` is
honoured; and once a job exists, an error answer carries ``x-should-retry:
false`` so that an SDK's automatic retry does not run the request twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from schemas.events import ErrorKind
from services.core.acceptor import Acceptor
from services.core.errors import ApiError, KafkaError, TokenrelayError
from services.core.http import StrictRequest, read_strict_body
from services.core.idempotency import idempotency_key
from services.core.runtime import Runtime
from services.core.submission import resolve_provider
from services.gateway.delivery import AnswerEndedError
from services.gateway.openai_wire import (
    JOB_ID_HEADER,
    PRIORITY_HEADER,
    ChatRequest,
    ChunkWriter,
    OpenAIError,
    chat_request,
    completion,
    error_body,
    failure,
    priority_of,
)
from services.gateway.router import SSE_HEADERS, sse_body
from services.gateway.sse import HEARTBEAT
from services.gateway.stream_item import StreamItem
from services.gateway.submit_stream import placed_plan
from services.gateway.watch import Plan, Watches

log = logging.getLogger(__name__)

NO_RETRY = {"x-should-retry": "false"}


def openai_error(exc: Exception) -> OpenAIError:
    """One of our errors in OpenAI's shape (the field it names becomes ``param``)."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, ApiError):
        status = 400 if exc.status == 422 else exc.status
        return OpenAIError(status, exc.message, exc.field, exc.code)
    return OpenAIError(
        503, f"Kafka did not answer; retry shortly: {exc}", None, "kafka_unavailable"
    )


def error_response(err: OpenAIError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(err), status_code=err.status, headers=headers)


class ChatStream(Response):
    """The streamed answer: the job's events as ``chat.completion.chunk`` objects."""

    def __init__(self, watches: Watches, plan: Plan, writer: ChunkWriter) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self._watches, self._plan, self._writer = watches, plan, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*SSE_HEADERS, (JOB_ID_HEADER.encode(), self._plan.job_id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        writer = self._writer

        async def write(batch: list[StreamItem]) -> None:
            body = b"".join(chunk_of(writer, item) for item in batch) if batch else HEARTBEAT
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if writer.over:
                raise AnswerEndedError

        await sse_body("openai", self._plan, self._watches, write, receive, send)


def chunk_of(writer: ChunkWriter, item: StreamItem) -> bytes:
    """What one of the job's events adds to the stream (nothing for most but the tokens).

    Once text went out, the answer is that attempt's: when the job starts over (a
    provider error it retries, or a worker or broker failure that hands it to a new
    attempt), a chat stream cannot take the text back, so it ends with an error that
    says where the job reads whole; events of an earlier attempt are skipped. Nothing
    follows an answer's end or error.
    """
    if writer.over:
        return b""
    if writer.attempt is not None and item.attempt != writer.attempt:
        if item.attempt < writer.attempt:
            return b""  # a worker that had not yet stopped when its job moved on
        if item.type in ("started", "token"):
            why = "its attempt was cut off (a worker or broker failed)"
            return over(writer, starts_over(writer, why))
    if item.type == "token":
        writer.attempt = item.attempt
        return writer.token(orjson.loads(item.raw)["text"])
    if item.type == "completed":
        event = orjson.loads(item.raw)
        return over(writer, writer.end(event.get("finish_reason"), event.get("usage")))
    if item.type in ("failed", "cancelled"):
        return over(writer, writer.error(failure(orjson.loads(item.raw))))
    if item.type == "retrying" and writer.sent_text:
        event = orjson.loads(item.raw)
        return over(
            writer, starts_over(writer, f"the provider failed mid-answer ({event.get('message')})")
        )
    return b""


def starts_over(writer: ChunkWriter, why: str) -> bytes:
    return writer.error(
        OpenAIError(
            502,
            f"{why}; the job runs again from the start: read it whole at "
            f"/v1/jobs/{item_job(writer)}/events",
            None,
            ErrorKind.PROVIDER.value,
        )
    )


def over(writer: ChunkWriter, last: bytes) -> bytes:
    writer.over = True
    return last


def item_job(writer: ChunkWriter) -> str:
    return writer.id.removeprefix("chatcmpl-")


async def ended(watches: Watches, plan: Plan) -> dict[str, Any]:
    """The job's terminal event, read from its stream."""
    cut = asyncio.get_running_loop().create_future()
    last: dict[str, Any] = {}
    async for batch in watches.events(plan, cut):
        for item in batch:
            if item.type in ("completed", "failed", "cancelled"):
                last = orjson.loads(item.raw)
    return last


async def whole_answer(watches: Watches, plan: Plan, created: int, model: str) -> Response:
    """The ``chat.completion`` of a request without ``stream``, once its job ended."""
    job_header = {JOB_ID_HEADER: plan.job_id}
    try:
        last = await ended(watches, plan)
    except TokenrelayError as exc:  # the broker went away while the job ran
        log.warning("chat completion %s: its events could not be read: %s", plan.job_id, exc)
        err = OpenAIError(503, f"the job's events could not be read ({exc}): read it by id")
        return error_response(err, {**job_header, **NO_RETRY})
    if last.get("type") != "completed":
        err = failure(last) if last else OpenAIError(503, "the stream ended early")
        return error_response(err, {**job_header, **NO_RETRY})
    answer = completion(f"chatcmpl-{plan.job_id}", created, model, last)
    return JSONResponse(answer, headers=job_header)


def chat_routes(rt: Runtime, watches: Watches) -> list[BaseRoute]:
    acceptor = Acceptor(rt)
    settings = rt.settings

    def parsed(body: Any, request: Request) -> ChatRequest:
        """The job of the body; the fake provider's models run on it, any other model on
        the default provider (openai when ``OPENAI_API_KEY`` is set)."""
        priority = priority_of(request.headers.get(PRIORITY_HEADER))
        model = body.get("model") if isinstance(body, dict) else None
        provider = "fake" if model == settings.fake_model else settings.default_provider
        chat_req = chat_request(body, priority, provider)
        try:
            resolve_provider(chat_req.job, settings)
        except ApiError as exc:
            raise OpenAIError(
                400, f"model {model!r}: {exc.message}", "model", "model_not_found"
            ) from exc
        return chat_req

    async def chat(request: Request) -> Response:
        try:
            who = rt.access.from_headers(request.headers)
            body = await read_strict_body(StrictRequest(request.scope, request.receive))
            chat_req = parsed(body, request)
            accepted, queued = await acceptor.accept_placed(
                chat_req.job, who, idempotency_key(request.headers)
            )
        except (OpenAIError, ApiError, KafkaError) as exc:
            return error_response(openai_error(exc))
        job_id = accepted["job_id"]
        job_header = {JOB_ID_HEADER: job_id}
        created = int(time.time())
        model = chat_req.job.model or ""
        try:
            plan = await placed_plan(watches, job_id, who, queued)
        except (ApiError, KafkaError) as exc:
            log.warning("chat completion %s accepted but not readable now: %s", job_id, exc)
            err = openai_error(exc)
            return error_response(err, {**job_header, **NO_RETRY})
        if chat_req.stream:
            writer = ChunkWriter(f"chatcmpl-{job_id}", created, model, chat_req.include_usage)
            return ChatStream(watches, plan, writer)
        return await whole_answer(watches, plan, created, model)

    async def models(request: Request) -> Response:
        try:
            rt.access.from_headers(request.headers)
        except ApiError as exc:
            return error_response(openai_error(exc))
        names = sorted({*rt.prices.models, settings.fake_model, settings.openai_model})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "tokenrelay"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route("/v1/chat/completions", chat, methods=["POST"], include_in_schema=False),
        Route("/v1/models", models, methods=["GET"], include_in_schema=False),
    ]
