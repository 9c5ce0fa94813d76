"""``POST /v1/batches`` and ``POST /v1/batches/{id}/pause|resume|cancel``.

A batch is many jobs of one tenant (the caller's) under one ``batch_id``, each
with its own priority. Every job is checked first (``bodies``); then each job's
``queued`` event and command, both carrying the ``batch_id``, are published as
``POST /v1/jobs`` does, pipelined (``submit``); the answer, 202 ``{batch_id,
job_ids}``, goes out once Kafka confirmed every record.

Pause, resume and cancel publish ``PauseBatch`` / ``ResumeBatch`` /
``CancelBatch`` to ``tokenrelay.jobs.control`` keyed by ``batch_id`` (so one
batch's instructions stay in order), for the batch's tenant or an admin; the
workers do the rest. Who owns a batch: this process remembers the batches it
accepted (so a batch can be paused the moment it is accepted, before the
aggregator has read it); any other is looked up in the aggregator's views.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict

from fastapi import APIRouter, Depends, Request
from opentelemetry.trace import SpanKind

from schemas.api import BatchAccepted, BatchInstruction
from schemas.control import CancelBatch, Control, PauseBatch, ResumeBatch
from schemas.jobs import JobRequest
from services.core import tracing
from services.core.acceptor import admit
from services.core.access import Caller
from services.core.auth import Principal
from services.core.errors import ApiError
from services.core.http import JsonResponse
from services.core.ids import job_id_ms, new_job_id, now_us
from services.core.metrics import JOBS_SUBMITTED
from services.core.openapi import batch_links, error_responses
from services.core.path_ids import BatchId
from services.core.runtime import Runtime
from services.core.submission import Submission, bounded, new_submission, publish, send_control
from services.ingest.bodies import CancelRequest, parse_batch

log = logging.getLogger(__name__)

REMEMBERED_BATCHES = 100_000
"""Batches this process accepted whose owner it knows without asking the aggregator."""

_JSONL = {"type": "string", "description": "One JobRequest as JSON per line."}
_BATCH_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "jobs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": "#/components/schemas/JobRequest"},
                        }
                    },
                    "additionalProperties": False,
                    "required": ["jobs"],
                }
            },
            "application/x-ndjson": {"schema": _JSONL},
            "application/jsonl": {"schema": _JSONL},
        },
    }
}


class BatchOwners:
    """Tenants of the batches this process accepted, most recent kept (LRU)."""

    def __init__(self, max_entries: int = REMEMBERED_BATCHES) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries

    def add(self, batch_id: str, tenant: str) -> None:
        self._owners[batch_id] = tenant
        while len(self._owners) > self._max:
            self._owners.popitem(last=False)

    def get(self, batch_id: str) -> str | None:
        return self._owners.get(batch_id)


def add_batch_routes(router: APIRouter, rt: Runtime, principal: Caller) -> None:
    owners = BatchOwners()
    _add_submit_route(router, rt, principal, owners)
    _add_control_routes(router, rt, principal, owners)


def _add_submit_route(
    router: APIRouter, rt: Runtime, principal: Caller, owners: BatchOwners
) -> None:
    settings = rt.settings
    topics = settings.topics

    @router.post(
        "/batches",
        status_code=202,
        openapi_extra=_BATCH_BODY_DOC,
        response_model=BatchAccepted,
        responses={
            202: {"links": batch_links()},
            **error_responses(400, 401, 402, 413, 415, 422, 429, 503),
        },
    )
    async def submit_batch(
        request: Request,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        body = await request.body()
        batch_id, now = new_job_id(), now_us()  # a UUIDv7, like job ids

        def build(req: JobRequest) -> Submission:
            return new_submission(
                req,
                settings,
                rt.prices,
                job_id=new_job_id(),
                tenant=who.tenant,
                now=now,
                batch_id=batch_id,
            )

        # Thousands of validations would hold the event loop (and every stream) for a while.
        subs = await asyncio.to_thread(
            parse_batch, body, request.headers.get("content-type"), settings.batch_max_jobs, build
        )
        admit(rt, who, len(subs))
        attributes: dict[str, str | int] = {
            "tokenrelay.batch_id": batch_id,
            "tokenrelay.jobs": len(subs),
        }
        with tracing.TRACER.start_as_current_span(
            "submit batch", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            await publish(rt.producer, topics, subs, f"batch {batch_id}", **bounded(rt))
        owners.add(batch_id, who.tenant)
        by_priority = Counter(s.queued.priority for s in subs)
        for priority, n in by_priority.items():
            JOBS_SUBMITTED.labels(priority.value).inc(n)
        log.info(
            "batch %s of %d jobs queued by %s (%s)",
            batch_id,
            len(subs),
            who.tenant,
            ", ".join(f"{p.value} {n}" for p, n in sorted(by_priority.items())),
        )
        return JsonResponse(
            {"batch_id": batch_id, "job_ids": [s.job_id for s in subs]}, status_code=202
        )


def _add_control_routes(
    router: APIRouter, rt: Runtime, principal: Caller, owners: BatchOwners
) -> None:
    topics = rt.settings.topics

    async def by_whom(batch_id: str, who: Principal) -> str:
        """``by`` of an instruction about the batch; 404 unless the caller may act on it."""
        tenant = owners.get(batch_id)
        if tenant is None and job_id_ms(batch_id) is not None:  # batch ids are UUIDv7 too
            summary = await rt.state.batch(batch_id)
            tenant = summary.tenant if summary is not None else None
        if tenant is None or not who.may_read(tenant):
            raise ApiError(404, "not_found", f"no batch {batch_id}", "batch_id")
        return who.tenant if who.tenant == tenant else f"admin:{who.tenant}"

    async def instruct(batch_id: str, control: Control, status: str) -> JsonResponse:
        await send_control(rt.producer, topics, control, **bounded(rt))
        log.info("batch %s %s requested by %s", batch_id, control.type, control.by)
        return JsonResponse({"batch_id": batch_id, "status": status}, status_code=202)

    @router.post(
        "/batches/{batch_id}/pause",
        status_code=202,
        response_model=BatchInstruction,
        responses=error_responses(401, 404, 422, 503),
    )
    async def pause_batch(
        batch_id: BatchId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        by = await by_whom(batch_id, who)
        return await instruct(
            batch_id, PauseBatch(batch_id=batch_id, ts=now_us(), by=by), "pausing"
        )

    @router.post(
        "/batches/{batch_id}/resume",
        status_code=202,
        response_model=BatchInstruction,
        responses=error_responses(401, 404, 422, 503),
    )
    async def resume_batch(
        batch_id: BatchId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        by = await by_whom(batch_id, who)
        return await instruct(
            batch_id, ResumeBatch(batch_id=batch_id, ts=now_us(), by=by), "resuming"
        )

    @router.post(
        "/batches/{batch_id}/cancel",
        status_code=202,
        response_model=BatchInstruction,
        responses=error_responses(400, 401, 404, 413, 415, 422, 503),
    )
    async def cancel_batch(
        batch_id: BatchId,
        body: CancelRequest | None = None,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        by = await by_whom(batch_id, who)
        reason = body.reason if body else None
        cancel = CancelBatch(batch_id=batch_id, ts=now_us(), by=by, reason=reason)
        return await instruct(batch_id, cancel, "cancelling")
