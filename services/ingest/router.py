"""``POST /v1/jobs``: validate, publish ``queued`` and then the command, answer 202.

``POST /v1/jobs/{id}/cancel`` (the job's tenant, or an admin) publishes a
``Cancel`` to ``tokenrelay.jobs.control``; the worker running the job closes
its stream, and a job still queued never starts. Batches (``batches``) and
admin retries (``retry``) add their routes here too.

The answer goes out only once Kafka has confirmed both records (``accept``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from schemas.api import JobAccepted, JobInstruction
from schemas.control import Cancel
from schemas.jobs import JobRequest
from services.core.acceptor import Acceptor
from services.core.auth import Principal
from services.core.errors import ApiError
from services.core.http import JsonResponse, StrictJsonRoute, accepts_event_stream
from services.core.idempotency import IDEMPOTENCY_KEY_MAX
from services.core.ids import now_us
from services.core.job_log import TopicPartitions, find_job
from services.core.openapi import error_responses, job_links
from services.core.path_ids import JobId
from services.core.runtime import Runtime
from services.core.submission import bounded, send_control
from services.ingest.batches import add_batch_routes
from services.ingest.bodies import CancelRequest
from services.ingest.lean_submit import lean_submit_route
from services.ingest.retry import add_retry_route

log = logging.getLogger(__name__)


def make_router(rt: Runtime) -> tuple[APIRouter, list[BaseRoute]]:
    """The ingest's routes, and the lean routes the app tries before them (``lean_submit``)."""
    router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)

    principal = rt.access.caller

    acceptor = Acceptor(rt)

    async def accept(
        req: JobRequest, who: Principal, idempotency_key: str | None, stream: bool
    ) -> Response:
        """Answer a valid submission: its job, queued (or the first answer under its key);
        with ``stream``, the job's event stream instead (``gateway.submit_stream``)."""
        if stream and rt.job_streams is None:
            raise ApiError(
                406,
                "not_acceptable",
                "this process serves no event streams: submit without "
                "'Accept: text/event-stream' and watch the stream_url of the answer",
                "Accept",
            )
        accepted, queued = await acceptor.accept_placed(req, who, idempotency_key)
        if stream and rt.job_streams is not None:
            return await rt.job_streams(who, accepted, queued)
        return JsonResponse(accepted, status_code=202)

    @router.post(
        "/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses={
            200: {
                "description": "With `Accept: text/event-stream`: the job's events, as "
                "`GET /v1/jobs/{job_id}/events` streams them (the same ids, to resume "
                "there), opened before a worker can start the job; the job's id is in "
                "`x-tokenrelay-job-id` and `Location`.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            202: {"links": job_links("/job_id")},
            **error_responses(400, 401, 402, 406, 409, 413, 415, 422, 429, 503),
        },
    )
    async def submit_job(
        req: JobRequest,
        who: Principal = Depends(principal),  # noqa: B008
        idempotency_key: str | None = Header(
            default=None,
            alias="Idempotency-Key",
            max_length=IDEMPOTENCY_KEY_MAX,
            description="A repeat with the same key answers with the first job.",
        ),
        accept_header: str | None = Header(
            default=None,
            alias="Accept",
            description="`text/event-stream`: answer with the job's event stream, not the 202.",
        ),
    ) -> Response:
        """Submit a job: 202 once Kafka stored it, with its id, where to watch it and a
        token that reads its events only; or, asked for, its event stream at once."""
        # Served by ``lean_submit`` (tried first): this signature is its OpenAPI, and this
        # route answers the same (tests/integration/test_lean_routes_agree.py).
        return await accept(req, who, idempotency_key, accepts_event_stream(accept_header))

    add_cancel_route(router, rt, principal)
    add_batch_routes(router, rt, principal)
    add_retry_route(router, rt, principal)
    return router, [lean_submit_route("/v1/jobs", rt.access, accept)]


def add_cancel_route(
    router: APIRouter, rt: Runtime, principal: Callable[[Request], Awaitable[Principal]]
) -> None:
    topics = rt.settings.topics
    partitions = TopicPartitions(rt.admin)

    @router.post(
        "/jobs/{job_id}/cancel",
        status_code=202,
        response_model=JobInstruction,
        responses=error_responses(400, 401, 404, 413, 415, 422, 503),
    )
    async def cancel_job(
        job_id: JobId,
        body: CancelRequest | None = None,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        located = await find_job(
            rt.clients,
            topics.lifecycle,
            await partitions.count(topics.lifecycle),
            job_id,
        )
        if located is None or not who.may_read(located.first.tenant):
            raise ApiError(404, "not_found", f"no job {job_id}", "job_id")
        by = who.tenant if who.tenant == located.first.tenant else f"admin:{who.tenant}"
        cancel = Cancel(job_id=job_id, ts=now_us(), by=by, reason=body.reason if body else None)
        await send_control(rt.producer, topics, cancel, **bounded(rt))
        log.info("job %s cancel requested by %s", job_id, by)
        return JsonResponse({"job_id": job_id, "status": "cancelling"}, status_code=202)
