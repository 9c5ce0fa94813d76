"""Cancelling jobs: a running stream stops within a second; a queued job never starts."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.conftest import ADMIN, ALICE, BOB
from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import by_job, events_reader, of_type

pytestmark = pytest.mark.kafka

LONG = {"max_tokens": 2000, "provider_options": {"tokens_per_s": 50}}
"""Forty seconds of tokens: only a cancel ends it within the test."""


async def sse_until_token(
    client: httpx.AsyncClient, job_id: str, cancel_after: int
) -> tuple[float, list[str]]:
    """Watch the job, cancel it after ``cancel_after`` tokens; seconds until ``cancelled``."""
    types: list[str] = []
    sent_at = 0.0
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=ALICE) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if not line.startswith("event: "):
                continue
            types.append(line.removeprefix("event: "))
            if types.count("token") == cancel_after and not sent_at:
                r = await client.post(
                    f"/v1/jobs/{job_id}/cancel", json={"reason": "enough"}, headers=ALICE
                )
                assert r.status_code == 202, r.text
                sent_at = time.monotonic()
            if types[-1] == "cancelled":
                return time.monotonic() - sent_at, types
    raise AssertionError(f"the stream ended without cancelled: {types}")


async def test_cancel_of_a_running_job_reaches_the_stream_within_a_second(make_settings) -> None:  # type: ignore[no-untyped-def]
    with running(make_settings(), ["ingest", "gateway", "worker"]) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            job_id = await submit(client, **LONG)
            latency, types = await sse_until_token(client, job_id, cancel_after=5)
    assert types[:2] == ["queued", "started"]
    assert "completed" not in types
    assert latency < 1.0, f"cancelled reached the stream after {latency:.3f}s"
    print(f"\ncancel latency (POST answered → cancelled on SSE): {latency * 1000:.0f} ms")


async def test_a_job_cancelled_while_queued_never_starts(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(worker_concurrency=1)
    with running(settings, ["ingest", "worker"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            events_reader(settings.kafka_bootstrap, settings.topics.tokens, 3) as log,
        ):
            blocker = await submit(client, **LONG)
            await log.until(lambda ev: len(of_type(ev, "started")) == 1, what="blocker running")
            queued = await submit(client)
            r = await client.post(f"/v1/jobs/{queued}/cancel", headers=ALICE)
            assert r.status_code == 202, r.text
            r = await client.post(f"/v1/jobs/{blocker}/cancel", headers=ADMIN)
            assert r.status_code == 202, r.text
            events = await log.until(
                lambda ev: len(of_type(ev, "cancelled")) == 2, what="both jobs cancelled"
            )
    assert [e.type for e in by_job(events, queued)] == ["queued", "cancelled"]
    ended = of_type(by_job(events, blocker), "cancelled")[0]
    assert ended.by == "admin:ops"


async def test_only_the_owner_or_an_admin_may_cancel(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id = await submit(client, max_tokens=3)
        r = await client.post(f"/v1/jobs/{job_id}/cancel", headers=BOB)
        assert r.status_code == 404
        assert orjson.loads(r.content)["error"]["field"] == "job_id"
        r = await client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": 5}, headers=ALICE)
        assert r.status_code == 422
