"""Reads of job, batch and queue state, from the aggregator, with tenancy on top.

``GET /v1/jobs/{id}``, ``/v1/jobs/{id}/result`` (409 until the job ended),
``POST /v1/jobs/{id}/stream-token`` (a token for a job's events, for a browser),
``GET /v1/jobs`` (newest first, filtered, paged by an opaque cursor),
``GET /v1/batches/{id}``, ``GET /v1/queues`` (with the workers' consumer lag from
the broker) and ``POST /v1/admin/clean``. A user sees only their tenant's jobs
and batches: another tenant's is a 404, never a 403, so ids cannot be probed.

A job the aggregator has not reached yet (it lags under load) is looked up on
the tokens topic: an accepted job never reads as 404, it reads as queued.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Query

from schemas.api import Cleaned, JobList, JobResult, QueueList, StreamToken
from schemas.events import Queued
from schemas.jobs import Priority
from schemas.state import BatchSummary, JobState, JobStatus
from services.core.access import Caller
from services.core.auth import Principal, Role
from services.core.errors import ApiError, KafkaError
from services.core.http import JsonResponse, StrictJsonRoute
from services.core.job_log import TopicPartitions, find_job
from services.core.lifecycle import tokens_offset
from services.core.openapi import error_responses
from services.core.path_ids import BatchId, JobId
from services.core.runtime import Runtime
from services.core.state_client import Lookup

RESULT_FIELDS = (
    "job_id",
    "status",
    "attempt",
    "content",
    "parsed",
    "finish_reason",
    "usage",
    "cost_usd",
    "token_count",
    "ttft_ms",
    "duration_ms",
    "tokens_per_s",
    "queue_wait_ms",
    "queued_at",
    "started_at",
    "finished_at",
    "error_kind",
    "error_message",
    "cancelled_by",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"`` → seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 3600, 30m, 12h or 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def result_body(state: JobState) -> dict[str, Any]:
    if not state.status.finished:
        raise ApiError(
            409,
            "not_finished",
            f"job {state.job_id} is {state.status.value}; no result yet",
            "status",
        )
    data = state.model_dump(mode="json")
    return {k: data[k] for k in RESULT_FIELDS}


def make_state_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)

    principal = rt.access.caller

    _add_job_routes(router, rt, principal)
    _add_summary_routes(router, rt, principal)
    _add_admin_routes(router, rt, principal)
    return router


def _add_job_routes(router: APIRouter, rt: Runtime, principal: Caller) -> None:
    lifecycle = rt.settings.topics.lifecycle
    partitions = TopicPartitions(rt.admin)

    async def not_reached(job_id: str, lookup: Lookup) -> JobState | None:
        """A job the aggregator has not reached yet, as its ``queued`` event (the copy on the
        lifecycle topic the aggregator reads) says.

        A job it has passed and does not hold was removed (retention, clean): gone.
        """
        located = await find_job(rt.clients, lifecycle, await partitions.count(lifecycle), job_id)
        if located is None or not isinstance(located.first, Queued):
            return None
        if lookup.reached(located.partition, located.first_offset):
            return None
        stream_offset = tokens_offset(located.headers)
        return JobState.queued(located.first, located.partition, stream_offset)

    async def readable_job(job_id: str, who: Principal) -> JobState:
        lookup = await rt.state.lookup(job_id)
        state = lookup.state or await not_reached(job_id, lookup)
        if state is None or not who.may_read(state.tenant):
            raise ApiError(404, "not_found", f"no job {job_id}", "job_id")
        return state

    @router.get(
        "/jobs/{job_id}", response_model=JobState, responses=error_responses(401, 404, 422, 503)
    )
    async def get_job(
        job_id: JobId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        state = await readable_job(job_id, who)
        return JsonResponse(state.model_dump(mode="json", by_alias=True))

    @router.get(
        "/jobs/{job_id}/result",
        response_model=JobResult,
        responses=error_responses(401, 404, 409, 422, 503),
    )
    async def get_result(
        job_id: JobId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        return JsonResponse(result_body(await readable_job(job_id, who)))

    @router.post(
        "/jobs/{job_id}/stream-token",
        response_model=StreamToken,
        responses=error_responses(401, 404, 422, 503),
    )
    async def stream_token(
        job_id: JobId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        """A token that reads this job's events (``?token=``), for an ``EventSource`` or a
        browser websocket, which cannot send an API key: the dashboard's job page uses it."""
        state = await readable_job(job_id, who)
        return JsonResponse(
            {
                "job_id": job_id,
                "stream_token": rt.access.stream_token(job_id, state.tenant),
                "stream_url": f"/v1/jobs/{job_id}/events",
                "expires_in_s": int(rt.settings.stream_token_ttl_s),
            }
        )

    @router.get("/jobs", response_model=JobList, responses=error_responses(401, 422, 503))
    async def list_jobs(
        who: Principal = Depends(principal),  # noqa: B008
        status: JobStatus | None = None,
        priority: Priority | None = None,
        batch_id: str | None = Query(default=None, max_length=100),
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = Query(default=None, max_length=500),
    ) -> JsonResponse:
        jobs, next_cursor = await rt.state.jobs(
            tenant=None if who.role is Role.ADMIN else who.tenant,
            status=status,
            priority=priority,
            batch_id=batch_id,
            limit=limit,
            cursor=cursor,
        )
        return JsonResponse(
            {
                "jobs": [j.model_dump(mode="json", by_alias=True) for j in jobs],
                "next_cursor": next_cursor,
            }
        )


def _add_summary_routes(router: APIRouter, rt: Runtime, principal: Caller) -> None:
    @router.get(
        "/batches/{batch_id}",
        response_model=BatchSummary,
        responses=error_responses(401, 404, 422, 503),
    )
    async def get_batch(
        batch_id: BatchId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        summary = await rt.state.batch(batch_id)
        if summary is None or not who.may_read(summary.tenant):
            raise ApiError(404, "not_found", f"no batch {batch_id}", "batch_id")
        return JsonResponse(summary.model_dump(mode="json"))

    @router.get("/queues", response_model=QueueList, responses=error_responses(401, 503))
    async def get_queues(_who: Principal = Depends(principal)) -> JsonResponse:  # noqa: B008
        queues = await rt.state.queues()
        topics = rt.settings.topics
        try:
            counts = await rt.admin.topics(timeout=2.0)
            lag = await rt.admin.group_lag(
                rt.settings.worker_group,
                {topics.jobs[q.priority]: counts.get(topics.jobs[q.priority], 0) for q in queues},
            )
        except KafkaError as exc:
            raise ApiError(503, "kafka_unavailable", f"cannot read consumer lag: {exc}") from exc
        for q in queues:
            q.consumer_lag = lag.get(topics.jobs[q.priority])
        return JsonResponse({"queues": [q.model_dump(mode="json") for q in queues]})


def _add_admin_routes(router: APIRouter, rt: Runtime, principal: Caller) -> None:
    @router.post(
        "/admin/clean", response_model=Cleaned, responses=error_responses(401, 403, 422, 503)
    )
    async def clean(
        who: Principal = Depends(principal),  # noqa: B008
        older_than: str = Query(default="0", max_length=20),
    ) -> JsonResponse:
        if who.role is not Role.ADMIN:
            raise ApiError(403, "forbidden", "cleaning job state needs an admin key")
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", str(exc), "older_than") from exc
        removed = await rt.state.clean(seconds)
        return JsonResponse({"removed": removed, "older_than_s": seconds})
