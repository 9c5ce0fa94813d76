"""A record that is not a job goes to the DLQ, loudly, and the worker carries on; a job whose
command cannot be read ends as failed."""

from __future__ import annotations

import httpx
import orjson
import pytest

from services.core.ids import new_job_id, now_us
from services.core.kafka import Producer
from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import dlq_reader, events_reader, of_type

pytestmark = pytest.mark.kafka


async def test_poison_record_is_dead_lettered_and_the_worker_keeps_running(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    t = settings.topics
    with running(settings, ["ingest", "worker"]) as base:
        async with Producer(settings.kafka_bootstrap) as producer:
            where = await producer.send(t.jobs["normal"], b"poison", b'{"not": "a job"')
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
            dlq_reader(settings.kafka_bootstrap, t.dlq, 3) as dlq,
        ):
            job_id = await submit(client, max_tokens=3)
            await log.until(
                lambda ev: [e.job_id for e in of_type(ev, "completed")] == [job_id],
                what="the next job completed",
            )
            letters = await dlq.until(lambda items: len(items) == 1, what="the dead letter")
    letter = letters[0]
    assert letter.source == f"{where.topic}[{where.partition}]@{where.offset}"
    assert letter.error_kind == "decode"
    assert letter.raw == '{"not": "a job"'
    assert letter.command is None


async def test_a_command_that_names_a_job_ends_the_job_as_failed(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A producer of our own topics wrote a command no worker can read (metadata nested past
    what any reader parses): the job's stream still ends, with ``failed`` (invalid_command)."""
    settings = make_settings()
    t = settings.topics
    job_id = new_job_id()
    deep: object = "bottom"
    for _ in range(250):
        deep = {"d": deep}
    command = {
        "schema": "tokenrelay.JobCommand/1",
        "job_id": job_id,
        "tenant": "alice",
        "attempt": 1,
        "submitted_at": now_us(),
        "provider": "fake",
        "model": "fake-1",
        "request": {"prompt": "hello", "metadata": deep},
    }
    with running(settings, ["worker"]):
        async with (
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
            dlq_reader(settings.kafka_bootstrap, t.dlq, 3) as dlq,
        ):
            async with Producer(settings.kafka_bootstrap) as producer:
                await producer.send(t.jobs["normal"], job_id, orjson.dumps(command))
            events = await log.until(
                lambda ev: any(e.job_id == job_id for e in of_type(ev, "failed")),
                what="the job's failed event",
            )
            letters = await dlq.until(lambda items: len(items) == 1, what="the dead letter")
    (failed,) = [e for e in of_type(events, "failed") if e.job_id == job_id]
    assert failed.error_kind == "invalid_command"
    assert failed.tenant == "alice" and failed.attempt == 1 and not failed.retryable
    assert "cannot be read" in failed.message
    assert letters[0].error_kind == "decode" and letters[0].command is None
