"""``WS /v1/jobs/{id}/ws``: the SSE events as JSON messages, resumable, closed with 1000."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import ALICE, BOB
from tests.support.jobs import submit
from tests.support.sse import SseEvent, read_events_async
from tests.support.ws import read_ws, ws_denial, ws_url

pytestmark = pytest.mark.kafka

SHORT = {"max_tokens": 20}
LIVE_TOKENS = 120
LIVE = {"max_tokens": LIVE_TOKENS, "provider_options": {"tokens_per_s": 30}}
"""Four seconds of tokens: long enough to be watched, left and resumed while it runs."""


def wire(events: list[SseEvent]) -> list[tuple[str | None, str, dict[str, object]]]:
    """What a client compares: each event's id, type and data."""
    return [(e.id, e.event, e.data) for e in events]


async def finished_job(client: httpx.AsyncClient, **body: object) -> tuple[str, list[SseEvent]]:
    """A job run to its end, and its events as SSE gives them."""
    job_id = await submit(client, ALICE, **body)
    events = await read_events_async(client, f"/v1/jobs/{job_id}/events", ALICE)
    assert events[-1].event == "completed"
    return job_id, events


async def test_finished_job_gives_the_sse_events_then_closes_1000(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id, sse = await finished_job(client, prompt="ws replay", **SHORT)
        ws = await read_ws(ws_url(stack, job_id), ALICE)
    assert wire(ws.events) == wire(sse)
    assert [e.event for e in ws.events[:2]] == ["queued", "started"]
    assert ws.events[-1].event == "completed"
    assert ws.close_code == 1000


async def test_live_job_gives_the_same_events_as_a_live_sse_watcher(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id = await submit(client, ALICE, prompt="ws live", **LIVE)
        ws, sse = await asyncio.gather(
            read_ws(ws_url(stack, job_id), ALICE),
            read_events_async(client, f"/v1/jobs/{job_id}/events", ALICE),
        )
    completed = ws.events[-1]
    assert completed.event == "completed"
    assert ws.opened_at_us < completed.data["ts"], "the websocket opened while the job ran"
    assert wire(ws.events) == wire(sse)
    tokens = [e for e in ws.events if e.event == "token"]
    assert [t.data["index"] for t in tokens] == list(range(1, LIVE_TOKENS + 1))
    assert completed.data["content"] == "".join(str(t.data["text"]) for t in tokens)
    assert ws.close_code == 1000


async def test_resume_after_a_finished_jobs_event_gives_exactly_the_rest(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id, sse = await finished_job(client, prompt="ws resume", **SHORT)
    cursor = sse[5].id
    assert cursor is not None
    rest = await read_ws(ws_url(stack, job_id, last_event_id=cursor), ALICE)
    assert wire(rest.events) == wire(sse[6:])
    assert rest.close_code == 1000


async def test_resume_of_a_live_job_after_the_client_left(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id = await submit(client, ALICE, prompt="ws live resume", **LIVE)
        first = await read_ws(ws_url(stack, job_id), ALICE, limit=10)
        cursor = first.events[-1].id
        assert cursor is not None
        rest = await read_ws(ws_url(stack, job_id, last_event_id=cursor), ALICE)
        whole = await read_events_async(client, f"/v1/jobs/{job_id}/events", ALICE)
    assert rest.opened_at_us < rest.events[-1].data["ts"], "the resume came while the job ran"
    assert wire(first.events + rest.events) == wire(whole)
    assert rest.events[-1].event == "completed"
    assert rest.close_code == 1000


async def test_resume_from_the_terminal_event_closes_1000_at_once(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id, sse = await finished_job(client, prompt="ws done", **SHORT)
    last = sse[-1].id
    assert last is not None
    ws = await read_ws(ws_url(stack, job_id, last_event_id=last), ALICE)
    assert ws.events == []
    assert ws.close_code == 1000


async def test_denials_are_http_answers_with_an_error_body(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job_id, sse = await finished_job(client, prompt="ws private", max_tokens=3)
    url = ws_url(stack, job_id)

    status, body = await ws_denial(url)
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"

    status, body = await ws_denial(url, BOB)
    assert status == 404
    assert body["error"]["code"] == "not_found"

    never_sent = str(int(str(sse[-1].id)) + 1)
    status, body = await ws_denial(ws_url(stack, job_id, last_event_id=never_sent), ALICE)
    assert status == 409
    assert body["error"]["field"] == "Last-Event-ID"

    status, body = await ws_denial(ws_url(stack, job_id, last_event_id="abc"), ALICE)
    assert status == 422
    assert body["error"]["field"] == "Last-Event-ID"

    status, body = await ws_denial(ws_url(stack, "nope"), ALICE)
    assert status == 404
    assert body["error"]["field"] == "job_id"


async def test_stream_token_in_the_query_opens_the_websocket(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        r = await client.post("/v1/jobs", json={"prompt": "ws token", **SHORT}, headers=ALICE)
        assert r.status_code == 202, r.text
        job = r.json()
        sse = await read_events_async(client, str(job["stream_url"]), ALICE)
        other = await submit(client, ALICE, prompt="ws token other", max_tokens=3)

    ws = await read_ws(ws_url(stack, job["job_id"], token=job["stream_token"]))
    assert wire(ws.events) == wire(sse)
    assert ws.close_code == 1000

    status, body = await ws_denial(ws_url(stack, other, token=job["stream_token"]))
    assert status == 401
    assert body["error"]["field"] == "token"
