"""Putting jobs on Kafka: each job's ``queued`` event, then its command, confirmed.

Every way in — one job, a batch, an admin retry, an OpenAI chat completion —
builds ``Submission``s and hands them to ``publish``. Order per job: the
``queued`` event is confirmed before the command is produced, so ``queued``
always precedes the worker's
``started`` on the job's partition of ``tokenrelay.tokens``; its copy on
``tokenrelay.lifecycle`` (``services.core.lifecycle``), which names the offset
``queued`` got, goes out with the command. Many jobs are
pipelined: every ``queued`` event is produced without waiting, then all are
awaited, then every command likewise; a batch of thousands costs two round
trips, not two per job. Every value is encoded (and its size checked) before the
first record is produced: a job that cannot be stored is refused whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from schemas.commands import JobCommand
from schemas.control import Control, control_key
from schemas.events import Queued
from schemas.jobs import FAKE_DEFAULT_MAX_TOKENS, FakeProviderOptions, JobRequest
from schemas.rules import FIRST_ATTEMPT, SUBMISSION_ATTEMPT
from services.core import tracing
from services.core.errors import ApiError, KafkaError
from services.core.http import kafka_unavailable
from services.core.kafka import MAX_RECORD_BYTES, Delivered, Producer
from services.core.kafka.probe import Probe
from services.core.lifecycle import copy_headers
from services.core.prices import ESTIMATE_OUTPUT_TOKENS, Prices
from services.core.runtime import Runtime
from services.core.serde import encode
from services.core.settings import Settings, Topics

log = logging.getLogger(__name__)


def resolve_provider(req: JobRequest, settings: Settings) -> tuple[str, str]:
    """The provider and model a job runs on, or a 422 naming the field."""
    provider = req.provider or settings.default_provider
    if provider == "openai" and settings.openai_api_key is None:
        raise ApiError(
            422,
            "invalid_request",
            "the openai provider is not configured (OPENAI_API_KEY)",
            "provider",
        )
    if provider == "fake" and req.provider_options:  # no options: every default holds
        try:
            FakeProviderOptions.model_validate(req.provider_options)
        except ValueError as exc:
            raise ApiError(
                422,
                "invalid_request",
                f"invalid provider_options for fake: {exc}",
                "provider_options",
            ) from exc
    return provider, req.model or settings.default_model(provider)


@dataclass(frozen=True, slots=True)
class Submission:
    """One job's two records: the ``queued`` event and the command for its priority's topic."""

    queued: Queued
    command: JobCommand

    @property
    def job_id(self) -> str:
        return self.command.job_id


def new_submission(
    req: JobRequest,
    settings: Settings,
    prices: Prices,
    *,
    job_id: str,
    tenant: str,
    now: int,
    batch_id: str | None = None,
) -> Submission:
    """A new job's records; raises a 422 ``ApiError`` naming the field when it cannot run."""
    provider, model = resolve_provider(req, settings)
    default_out = FAKE_DEFAULT_MAX_TOKENS if provider == "fake" else ESTIMATE_OUTPUT_TOKENS
    queued = Queued(
        job_id=job_id,
        attempt=SUBMISSION_ATTEMPT,
        seq=0,
        ts=now,
        worker_id="ingest",
        tenant=tenant,
        priority=req.priority,
        model=model,
        provider=provider,
        batch_id=batch_id,
        estimated_cost_usd=prices.estimate_usd(model, req, default_out),
        max_tokens=req.max_tokens or (default_out if provider == "fake" else None),
    )
    command = JobCommand(
        job_id=job_id,
        tenant=tenant,
        attempt=FIRST_ATTEMPT,
        submitted_at=now,
        batch_id=batch_id,
        provider=provider,
        model=model,
        request=req,
    )
    return Submission(queued, command)


def _encoded(records: Sequence[tuple[str, str, BaseModel]]) -> list[tuple[str, str, bytes]]:
    """Every value written before anything is produced, so that a job that cannot be stored
    (``JobRequest`` should have refused it) is refused whole and leaves nothing on Kafka."""
    out = []
    for topic, key, model in records:
        try:
            value = encode(model)
        except PydanticSerializationError as exc:
            raise ApiError(
                422, "invalid_request", f"the job cannot be written as JSON: {exc}", "body"
            ) from exc
        if len(value) > MAX_RECORD_BYTES:
            raise ApiError(
                413,
                "payload_too_large",
                f"a job is {len(value)} bytes as stored; a record holds at most {MAX_RECORD_BYTES}",
                "body",
            )
        out.append((topic, key, value))
    return out


DEFAULT_TIMEOUT_S = 5.0
"""How long a publish may wait for Kafka unless told (``submit_timeout_s``)."""


def _refuse_if_kafka_down(kafka: Probe | None, what: str) -> None:
    """Answer at once while the probe says Kafka is unreachable: nothing is produced then."""
    if kafka is not None and kafka.unreachable:
        log.warning("%s not accepted: %s", what, kafka.reason())
        raise kafka_unavailable(f"{what} was not stored: Kafka is unreachable; retry")


class Stored(NamedTuple):
    """Where a submission's records landed."""

    queued: Delivered
    """Its ``queued`` event on ``tokenrelay.tokens``: where the job's stream starts."""
    command: Delivered


async def publish(
    producer: Producer,
    topics: Topics,
    subs: Sequence[Submission],
    what: str = "the job",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kafka: Probe | None = None,
) -> list[Stored]:
    """Publish every submission; where each one's ``queued`` and command landed, once Kafka
    confirmed them all.

    Both rounds together may take ``timeout_s``. Raises a 503 ``ApiError`` with
    ``Retry-After`` when ``kafka`` says it is unreachable (nothing is produced then)
    or Kafka did not confirm every record in time (some records may still land: a
    retry with the same ``Idempotency-Key`` answers with the job it created).
    """
    queued = _encoded([(topics.tokens, s.job_id, s.queued) for s in subs])
    commands = _encoded([(topics.jobs[s.queued.priority], s.job_id, s.command) for s in subs])
    _refuse_if_kafka_down(kafka, what)
    headers = tracing.inject()  # the caller's span, when traced: the worker continues it
    try:
        async with asyncio.timeout(timeout_s):
            stored = await producer.produce_all([(*r, headers) for r in queued])
            # The lifecycle copies, each naming its ``queued``'s offset, ride with the commands.
            copies = [
                (topics.lifecycle, key, value, copy_headers(headers, at.offset))
                for (_, key, value), at in zip(queued, stored, strict=True)
            ]
            sent = await producer.produce_all([*copies, *((*r, headers) for r in commands)])
            return [Stored(*both) for both in zip(stored, sent[len(copies) :], strict=True)]
    except (TimeoutError, KafkaError) as exc:
        log.warning("%s not accepted: %s", what, exc or "timed out")
        raise kafka_unavailable(f"{what} could not be stored; retry") from exc


async def send_control(
    producer: Producer,
    topics: Topics,
    control: Control,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kafka: Probe | None = None,
) -> Delivered:
    """Publish an instruction to the control topic, keyed by its job or batch; 503 if not stored."""
    what = f"the {control.type}"
    _refuse_if_kafka_down(kafka, what)
    try:
        async with asyncio.timeout(timeout_s):
            return await producer.send(topics.control, control_key(control), encode(control))
    except (TimeoutError, KafkaError) as exc:
        log.warning("%s not stored: %s", control.type, exc or "timed out")
        raise kafka_unavailable(f"{what} was not stored; retry") from exc


def bounded(rt: Runtime) -> dict[str, Any]:
    """The keyword arguments that bound a publish by the process's settings and probe."""
    return {"timeout_s": rt.settings.submit_timeout_s, "kafka": rt.kafka}
