"""``POST /v1/jobs``: validate, publish ``queued`` and then the command, answer 202.

``POST /v1/jobs/{id}/cancel`` (the job's tenant, or an admin) publishes a
``Cancel`` to ``tokenrelay.jobs.control``; the worker running the job closes
its stream, and a job still queued never starts.

The answer goes out only once Kafka has confirmed both records.

``queued`` is confirmed before the command is produced, so it always precedes
the worker's ``started`` on the job's partition of ``tokenrelay.tokens``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import JobCommand
from schemas.control import Cancel
from schemas.events import Queued
from schemas.jobs import FakeProviderOptions, JobRequest
from services.core.auth import Principal
from services.core.errors import ApiError, KafkaError
from services.core.http import JsonResponse
from services.core.ids import new_job_id, now_us
from services.core.job_log import TopicPartitions, find_job
from services.core.metrics import JOBS_SUBMITTED, SUBMIT_SECONDS
from services.core.runtime import Runtime
from services.core.serde import encode
from services.ingest.idempotency import IdempotencyCache

log = logging.getLogger(__name__)

SUBMIT_TIMEOUT_S = 15.0


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


def resolve_provider(req: JobRequest, rt: Runtime) -> tuple[str, str]:
    """The provider and model a job runs on, or a 422 naming the field."""
    provider = req.provider or rt.settings.default_provider
    if provider == "openai" and rt.settings.openai_api_key is None:
        raise ApiError(
            422,
            "invalid_request",
            "the openai provider is not configured (OPENAI_API_KEY)",
            "provider",
        )
    if provider == "fake":
        try:
            FakeProviderOptions.model_validate(req.provider_options)
        except ValueError as exc:
            raise ApiError(
                422,
                "invalid_request",
                f"invalid provider_options for fake: {exc}",
                "provider_options",
            ) from exc
    return provider, req.model or rt.settings.default_model(provider)


def make_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1")
    idem = IdempotencyCache()
    topics = rt.settings.topics

    async def principal(request: Request) -> Principal:
        return rt.access.principal(request)

    async def publish(req: JobRequest, who: Principal) -> dict[str, Any]:
        provider, model = resolve_provider(req, rt)
        job_id, now = new_job_id(), now_us()
        queued = Queued(
            job_id=job_id,
            attempt=0,
            seq=0,
            ts=now,
            worker_id="ingest",
            tenant=who.tenant,
            priority=req.priority,
            model=model,
            provider=provider,
            estimated_cost_usd=0.0,
        )
        command = JobCommand(
            job_id=job_id,
            tenant=who.tenant,
            attempt=1,
            submitted_at=now,
            provider=provider,
            model=model,
            request=req,
        )
        try:
            async with asyncio.timeout(SUBMIT_TIMEOUT_S):
                await rt.producer.send(topics.tokens, job_id, encode(queued))
                where = await rt.producer.send(topics.jobs[req.priority], job_id, encode(command))
        except (TimeoutError, KafkaError) as exc:
            log.warning("job %s not accepted: %s", job_id, exc or "timed out")
            raise ApiError(503, "kafka_unavailable", "the job could not be stored; retry") from exc
        log.info(
            "job %s queued by %s at %s[%d]@%d",
            job_id,
            who.tenant,
            where.topic,
            where.partition,
            where.offset,
        )
        JOBS_SUBMITTED.labels(req.priority.value).inc()
        return {
            "job_id": job_id,
            "status": "queued",
            "priority": req.priority.value,
            "stream_url": f"/v1/jobs/{job_id}/events",
            "stream_token": rt.access.stream_token(job_id, who.tenant),
            "estimated_cost_usd": queued.estimated_cost_usd,
        }

    @router.post("/jobs", status_code=202)
    async def submit_job(
        req: JobRequest,
        who: Principal = Depends(principal),  # noqa: B008
        idempotency_key: str | None = Header(default=None, max_length=200),
    ) -> JsonResponse:
        started = time.perf_counter()
        if idempotency_key is None:
            body = await publish(req, who)
        else:
            fut, owner = idem.claim(who.tenant, idempotency_key)
            if owner:
                try:
                    fut.set_result(await publish(req, who))
                except BaseException:
                    idem.release(who.tenant, idempotency_key)
                    fut.cancel()
                    raise
            body = await asyncio.shield(fut)
        SUBMIT_SECONDS.observe(time.perf_counter() - started)
        return JsonResponse(body, status_code=202)

    add_cancel_route(router, rt, principal)
    return router


def add_cancel_route(
    router: APIRouter, rt: Runtime, principal: Callable[[Request], Awaitable[Principal]]
) -> None:
    topics = rt.settings.topics
    partitions = TopicPartitions(rt.admin)

    @router.post("/jobs/{job_id}/cancel", status_code=202)
    async def cancel_job(
        job_id: str,
        body: CancelRequest | None = None,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        located = await find_job(
            rt.settings.kafka_bootstrap,
            topics.tokens,
            await partitions.count(topics.tokens),
            job_id,
        )
        if located is None or not who.may_read(located.first.tenant):
            raise ApiError(404, "not_found", f"no job {job_id}", "job_id")
        by = who.tenant if who.tenant == located.first.tenant else f"admin:{who.tenant}"
        cancel = Cancel(job_id=job_id, ts=now_us(), by=by, reason=body.reason if body else None)
        try:
            async with asyncio.timeout(SUBMIT_TIMEOUT_S):
                await rt.producer.send(topics.control, job_id, encode(cancel))
        except (TimeoutError, KafkaError) as exc:
            raise ApiError(503, "kafka_unavailable", "the cancel was not stored; retry") from exc
        log.info("job %s cancel requested by %s", job_id, by)
        return JsonResponse({"job_id": job_id, "status": "cancelling"}, status_code=202)
