"""A record that is not a job goes to the DLQ, loudly, and the worker carries on."""

from __future__ import annotations

import httpx
import pytest

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
