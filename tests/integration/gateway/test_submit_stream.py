"""``POST /v1/jobs`` with ``Accept: text/event-stream``: the job's stream in the same request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.sse import SseEvent, SseParser, read_events_async
from tests.support.stack import running

pytestmark = pytest.mark.kafka

STREAM = {**ALICE, "Accept": "text/event-stream"}


def idents(events: list[SseEvent]) -> list[tuple[str | None, str, dict[str, Any]]]:
    return [(e.id, e.event, e.data) for e in events]


async def submit_streaming(
    c: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str] = STREAM,
    limit: int | None = None,
) -> tuple[httpx.Response, list[SseEvent]]:
    """The answer's head, and its events until the server ends it (or ``limit`` of them)."""
    events: list[SseEvent] = []
    parser = SseParser()
    async with c.stream("POST", "/v1/jobs", json=body, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if (ev := parser.feed(line)) is not None:
                events.append(ev)
                if limit is not None and len(events) >= limit:
                    break
    return resp, events


async def test_the_answer_is_the_jobs_whole_stream_as_its_events_endpoint_sends_it(
    stack: str,
) -> None:
    body = {"prompt": "stream me", "max_tokens": 60, "provider_options": {"tokens_per_s": 200}}
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        resp, events = await submit_streaming(c, body)
        job = resp.headers["x-tokenrelay-job-id"]
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["location"] == f"/v1/jobs/{job}"
        again = await read_events_async(c, f"/v1/jobs/{job}/events", ALICE)
    assert events[0].event == "queued" and events[-1].event == "completed"
    assert [e.data["index"] for e in events if e.event == "token"] == list(range(1, 61))
    assert idents(events) == idents(again)
    assert {e.data["job_id"] for e in events} == {job}


async def test_a_broken_answer_resumes_at_the_events_endpoint_without_gap(stack: str) -> None:
    body = {"prompt": "break me", "max_tokens": 80, "provider_options": {"tokens_per_s": 100}}
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        resp, head = await submit_streaming(c, body, limit=10)
        job = resp.headers["x-tokenrelay-job-id"]
        rest = await read_events_async(
            c, f"/v1/jobs/{job}/events", {**ALICE, "Last-Event-ID": str(head[-1].id)}
        )
        whole = await read_events_async(c, f"/v1/jobs/{job}/events", ALICE)
    assert idents(head + rest) == idents(whole)
    assert whole[-1].event == "completed"


async def test_a_repeat_under_its_idempotency_key_streams_the_first_job(stack: str) -> None:
    body = {"prompt": "once", "max_tokens": 5}
    headers = {**STREAM, "Idempotency-Key": "stream-once"}
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        first, events = await submit_streaming(c, body, headers)
        second, replayed = await submit_streaming(c, body, headers)
        job = first.headers["x-tokenrelay-job-id"]
        other = await c.get(f"/v1/jobs/{job}/events", headers=BOB)
    assert second.headers["x-tokenrelay-job-id"] == first.headers["x-tokenrelay-job-id"]
    assert idents(replayed) == idents(events)
    assert other.status_code == 404, "another tenant still reads nothing of it"


async def test_refusals_are_the_same_and_json_is_still_the_default(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=60) as c:
        bad = await c.post("/v1/jobs", json={"prompt": ""}, headers=STREAM)
        no_key = await c.post(
            "/v1/jobs", json={"prompt": "x"}, headers={"Accept": "text/event-stream"}
        )
        plain = await c.post(
            "/v1/jobs", json={"prompt": "x"}, headers={**ALICE, "Accept": "application/json"}
        )
        refused = await c.post(
            "/v1/jobs", json={"prompt": "x"}, headers={**ALICE, "Accept": "text/event-stream;q=0"}
        )
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "prompt")
    assert no_key.status_code == 401
    assert plain.status_code == 202 and plain.json()["stream_url"].endswith("/events")
    assert refused.status_code == 202, "q=0 means not acceptable: the ordinary answer"


async def test_a_process_without_the_gateway_answers_406_naming_accept(
    make_settings: Any,
) -> None:
    settings: Settings = make_settings()
    with running(settings, ["ingest"], ready_path="/healthz") as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            r = await c.post("/v1/jobs", json={"prompt": "x"}, headers=STREAM)
            plain = await c.post("/v1/jobs", json={"prompt": "x"}, headers=ALICE)
    assert r.status_code == 406
    assert r.json()["error"] | {"message": ""} == {
        "code": "not_acceptable",
        "field": "Accept",
        "message": "",
    }
    assert plain.status_code == 202
