"""Retries with backoff via the retry topic; none for auth; the DLQ after the last attempt."""

from __future__ import annotations

import httpx
import pytest

from schemas.rules import TERMINAL_EVENT_TYPES
from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import by_job, dlq_reader, events_reader, of_type

pytestmark = pytest.mark.kafka


async def test_retries_back_off_then_succeed_fail_at_once_or_dead_letter(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(retry_base_s=0.2, retry_max_s=1.0)
    t = settings.topics
    with running(settings, ["ingest", "worker"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, t.tokens, 3) as log,
            dlq_reader(settings.kafka_bootstrap, t.dlq, 3) as dlq,
        ):
            flaky = await submit(
                client,
                max_tokens=5,
                provider_options={"fail_with": "provider", "fail_after": 2, "fail_attempts": 2},
            )
            denied = await submit(client, provider_options={"fail_with": "auth"})
            doomed = await submit(
                client, max_attempts=2, provider_options={"fail_with": "rate_limited"}
            )
            events = await log.until(
                lambda ev: len(of_type(ev, *TERMINAL_EVENT_TYPES)) == 3, what="three jobs ended"
            )
            letters = await dlq.until(lambda items: len(items) >= 1, what="a dead letter")

    flaky_events = by_job(events, flaky)
    assert [e.attempt for e in of_type(flaky_events, "started")] == [1, 2, 3]
    retrying = of_type(flaky_events, "retrying")
    assert [(e.attempt, e.next_attempt, e.error_kind) for e in retrying] == [
        (1, 2, "provider"),
        (2, 3, "provider"),
    ]
    done = of_type(flaky_events, *TERMINAL_EVENT_TYPES)
    assert [(e.type, e.attempt) for e in done] == [("completed", 3)]
    assert done[0].content == "".join(
        e.text for e in of_type(flaky_events, "token") if e.attempt == 3
    )
    starts = {e.attempt: e.ts for e in of_type(flaky_events, "started")}
    for r in retrying:
        assert starts[r.next_attempt] >= r.not_before, "the retry waited for its not_before"

    denied_events = by_job(events, denied)
    assert [e.type for e in denied_events] == ["queued", "started", "failed"]
    assert denied_events[-1].error_kind == "auth"

    doomed_events = by_job(events, doomed)
    assert [e.type for e in doomed_events if e.type != "token"] == [
        "queued",
        "started",
        "retrying",
        "started",
        "failed",
    ]
    assert [letter.command.job_id for letter in letters if letter.command] == [doomed]
    assert letters[0].command is not None and letters[0].command.attempt == 2
    assert letters[0].error_kind == "rate_limited"
    assert "fake failure" in letters[0].error
