"""Accepting a valid job: publish its records, answer with where to watch it.

``Acceptor.accept`` is what ``POST /v1/jobs`` (both its routes) and ``POST
/v1/chat/completions`` do with a request that passed every check: build the
submission, publish ``queued`` and the command (the answer goes out only once
Kafka confirmed both), and answer. A repeat under the same ``Idempotency-Key``
(per tenant, per process) answers with the first job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from opentelemetry.trace import SpanKind

from schemas.jobs import JobRequest
from services.core import tracing
from services.core.auth import Principal
from services.core.idempotency import IdempotencyCache, fingerprint
from services.core.ids import new_job_id, now_us
from services.core.kafka import Delivered
from services.core.metrics import JOBS_SUBMITTED, SUBMIT_SECONDS
from services.core.quotas import refusal
from services.core.runtime import Runtime
from services.core.submission import Submission, bounded, new_submission, publish
from services.core.tenancy import DEFAULT_LIMITS

log = logging.getLogger(__name__)


def admit(rt: Runtime, who: Principal, jobs: int = 1) -> None:
    """Refuse a submission of ``jobs`` jobs that its tenant's budgets or quotas, or its
    key's ``rpm``, forbid (402, 429 or 422, ``services/core/quotas.py``); count them
    against both ``rpm`` if not."""
    tenant = who.tenant
    limits = rt.tenants.limits(tenant)
    if limits == DEFAULT_LIMITS and who.rpm is None:
        return
    now, clock = now_us(), time.monotonic()
    refused = (
        refusal(limits, rt.spend.spent(tenant, now), now)
        or rt.rates.refusal(who.caller, who.rpm, jobs, clock, what="this key")
        or rt.rates.refusal(f"tenant:{tenant}", limits.rpm, jobs, clock)
    )
    if refused is not None:
        log.info("%d job(s) of %s refused: %s", jobs, tenant, refused.message)
        raise refused
    rt.rates.take(who.caller, who.rpm, jobs, clock)
    rt.rates.take(f"tenant:{tenant}", limits.rpm, jobs, clock)


class Acceptor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.idem = IdempotencyCache()

    async def _publish(self, sub: Submission, who: Principal) -> tuple[dict[str, Any], Delivered]:
        rt = self.rt
        admit(rt, who)
        attributes = {"tokenrelay.job_id": sub.job_id, "tokenrelay.tenant": who.tenant}
        with tracing.TRACER.start_as_current_span(
            "submit job", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            ((queued, where),) = await publish(
                rt.producer, rt.settings.topics, [sub], f"job {sub.job_id}", **bounded(rt)
            )
        log.info(
            "job %s queued by %s at %s[%d]@%d",
            sub.job_id,
            who.tenant,
            where.topic,
            where.partition,
            where.offset,
        )
        JOBS_SUBMITTED.labels(sub.queued.priority.value).inc()
        return {
            "job_id": sub.job_id,
            "status": "queued",
            "priority": sub.queued.priority.value,
            "stream_url": f"/v1/jobs/{sub.job_id}/events",
            "stream_token": rt.access.stream_token(sub.job_id, who.tenant),
            "estimated_cost_usd": sub.queued.estimated_cost_usd,
        }, queued

    async def accept(
        self, req: JobRequest, who: Principal, idempotency_key: str | None
    ) -> dict[str, Any]:
        """The 202 body of a valid submission (or of the first one under its key)."""
        body, _ = await self.accept_placed(req, who, idempotency_key)
        return body

    async def accept_placed(
        self, req: JobRequest, who: Principal, idempotency_key: str | None
    ) -> tuple[dict[str, Any], Delivered | None]:
        """``accept``'s body, and where the job's ``queued`` event landed on the tokens
        topic (None when a repeat under its key answered with an earlier job)."""
        started = time.perf_counter()
        rt = self.rt
        # Every check first: a key never stands for a request that would have been refused.
        sub = new_submission(
            req, rt.settings, rt.prices, job_id=new_job_id(), tenant=who.tenant, now=now_us()
        )
        queued: Delivered | None = None
        if idempotency_key is None:
            body, queued = await self._publish(sub, who)
        else:
            fut, owner = self.idem.claim(who.tenant, idempotency_key, fingerprint(req))
            if owner:
                try:
                    body, queued = await self._publish(sub, who)
                    fut.set_result(body)
                except BaseException:
                    self.idem.release(who.tenant, idempotency_key)
                    fut.cancel()
                    raise
            body = await asyncio.shield(fut)
        SUBMIT_SECONDS.observe(time.perf_counter() - started)
        return body, queued
