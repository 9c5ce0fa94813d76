"""``POST /v1/jobs/{id}/retry``: an admin runs a failed or cancelled job again.

The job's state comes from the aggregator; its request from its original
command, which is still on its priority's topic while that topic keeps it: on
the partition of its ``job_id`` (murmur2), at or just after the time it was
queued (``offsets_for_times``), so the search reads a few records, not the
partition. The retry is a new submission of the same job: a ``queued`` event
numbered ``submissions + 1`` (so the job's state goes back to queued), then the
command as the next attempt, ``submitted_at`` now — later than any cancel of
the job or its batch, so it runs.

A retry gets a fresh budget of attempts: ``max_attempts`` counts from the retry's
first attempt (capped at the schema's 50), else a job that failed after its
last attempt would fail again at once.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from opentelemetry.trace import SpanKind

from schemas.api import JobRetried
from schemas.commands import JobCommand
from schemas.events import Queued
from schemas.rules import SUBMISSION_ATTEMPT
from schemas.state import JobState, JobStatus
from services.core import tracing
from services.core.access import Caller
from services.core.auth import Principal
from services.core.errors import ApiError
from services.core.http import JsonResponse
from services.core.ids import job_id_ms, now_us
from services.core.job_log import TopicPartitions, find_command
from services.core.openapi import error_responses, job_links
from services.core.path_ids import JobId
from services.core.runtime import Runtime
from services.core.submission import Submission, bounded, publish

log = logging.getLogger(__name__)

RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
MAX_ATTEMPTS = 50
"""``JobRequest.max_attempts``'s upper bound."""


def retry_submission(state: JobState, original: JobCommand, now: int) -> Submission:
    """The records of an admin retry of ``state``'s job, from its original command."""
    attempt = max(state.attempt, 1) + 1
    if attempt > MAX_ATTEMPTS:
        raise ApiError(
            409,
            "conflict",
            f"the job has run {attempt - 1} attempts; it cannot be retried again",
            "attempt",
        )
    budget = min(MAX_ATTEMPTS, attempt - 1 + original.request.max_attempts)
    request = original.request.model_copy(update={"max_attempts": budget})
    command = original.model_copy(
        update={"attempt": attempt, "submitted_at": now, "not_before": None, "request": request}
    )
    queued = Queued(
        job_id=original.job_id,
        attempt=SUBMISSION_ATTEMPT,
        seq=state.submissions + 1,
        ts=now,
        worker_id="ingest",
        tenant=original.tenant,
        priority=state.priority or original.request.priority,
        model=original.model,
        provider=original.provider,
        batch_id=original.batch_id,
        estimated_cost_usd=state.estimated_cost_usd,
        max_tokens=state.max_tokens,
    )
    return Submission(queued, command)


def add_retry_route(router: APIRouter, rt: Runtime, principal: Caller) -> None:
    topics = rt.settings.topics
    partitions = TopicPartitions(rt.admin)

    @router.post(
        "/jobs/{job_id}/retry",
        status_code=202,
        response_model=JobRetried,
        responses={
            202: {"links": job_links("/job_id")},
            **error_responses(401, 403, 404, 409, 422, 503),
        },
    )
    async def retry_job(
        job_id: JobId,
        who: Principal = Depends(principal),  # noqa: B008
    ) -> JsonResponse:
        if not who.is_admin:
            raise ApiError(403, "forbidden", "only an admin may retry a job")
        state = await rt.state.job(job_id) if job_id_ms(job_id) is not None else None
        if state is None:
            raise ApiError(404, "not_found", f"no job {job_id}", "job_id")
        if state.status not in RETRYABLE:
            raise ApiError(
                409,
                "conflict",
                f"only a failed or cancelled job can be retried; this one is {state.status.value}",
                "status",
            )
        if state.priority is None or state.queued_at is None:
            raise ApiError(
                409, "conflict", "the job's submission has expired; it cannot be retried", "job_id"
            )
        topic = topics.jobs[state.priority]
        original = await find_command(
            rt.clients,
            topic,
            await partitions.count(topic),
            job_id,
            state.queued_at,
        )
        if original is None:
            raise ApiError(
                409,
                "conflict",
                f"the job's command has expired from {topic}; it cannot be retried",
                "job_id",
            )
        sub = retry_submission(state, original, now_us())
        with tracing.TRACER.start_as_current_span(
            "retry job", kind=SpanKind.PRODUCER, attributes={"tokenrelay.job_id": job_id}
        ):
            await publish(rt.producer, topics, [sub], f"the retry of job {job_id}", **bounded(rt))
        log.info(
            "job %s retried by admin:%s as attempt %d",
            job_id,
            who.tenant,
            sub.command.attempt,
        )
        return JsonResponse(
            {"job_id": job_id, "status": "queued", "attempt": sub.command.attempt},
            status_code=202,
        )
