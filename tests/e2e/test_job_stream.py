"""One job from HTTP to a streamed answer, through the real broker."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ADMIN, ALICE, BOB
from tests.support.sse import read_events

pytestmark = pytest.mark.kafka


def submit(client: httpx.Client, headers: dict[str, str], **body: object) -> dict[str, object]:
    r = client.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def test_submitted_job_streams_every_token_in_order(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        job = submit(client, ALICE, prompt="tell me about kafka", max_tokens=25)
        assert job["status"] == "queued"
        assert job["stream_url"] == f"/v1/jobs/{job['job_id']}/events"
        events = read_events(client, str(job["stream_url"]), ALICE)

    types = [e.event for e in events]
    assert types[0] == "queued"
    assert types[1] == "started"
    assert types[-1] == "completed"
    tokens = [e for e in events if e.event == "token"]
    assert len(tokens) == 25
    assert [t.data["index"] for t in tokens] == list(range(1, 26))
    assert [t.data["seq"] for t in tokens] == list(range(1, 26))
    completed = events[-1].data
    assert completed["content"] == "".join(t.data["text"] for t in tokens)
    assert completed["usage"]["completion_tokens"] == 25
    assert completed["duration_ms"] > 0
    offsets = [int(e.id) for e in events if e.id is not None]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(events)
    assert {e.data["job_id"] for e in events} == {job["job_id"]}


def test_same_prompt_gives_the_same_text(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        a = submit(client, ALICE, prompt="same", max_tokens=12)
        b = submit(client, BOB, prompt="same", max_tokens=12)
        ca = read_events(client, str(a["stream_url"]), ALICE)[-1].data["content"]
        cb = read_events(client, str(b["stream_url"]), BOB)[-1].data["content"]
    assert ca == cb
    assert len(ca.split()) == 12


def test_finished_job_replays_identically_and_resumes_after_a_cursor(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        job = submit(client, ALICE, prompt="replay me", max_tokens=10)
        path = str(job["stream_url"])
        first = read_events(client, path, ALICE)
        again = read_events(client, path, ALICE)
        cursor = first[5].id
        assert cursor is not None
        rest = read_events(client, path, {**ALICE, "Last-Event-ID": cursor})
    assert [(e.id, e.data) for e in again] == [(e.id, e.data) for e in first]
    assert [e.id for e in rest] == [e.id for e in first[6:]]


def test_other_tenants_cannot_watch_but_admin_and_stream_token_can(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        job = submit(client, ALICE, prompt="private", max_tokens=3)
        path = str(job["stream_url"])
        r = client.get(path, headers=BOB)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        assert client.get(path).status_code == 401
        assert read_events(client, path, ADMIN)[-1].event == "completed"
        by_token = read_events(client, f"{path}?token={job['stream_token']}")
        assert by_token[-1].event == "completed"
        other = submit(client, ALICE, prompt="other", max_tokens=3)
        r = client.get(f"/v1/jobs/{other['job_id']}/events?token={job['stream_token']}")
        assert r.status_code == 401
        assert r.json()["error"]["field"] == "token"


def test_unknown_job_is_404(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        for job_id in ("01a207b5-22df-77b8-b58d-924b943ae4ae", "not-a-job"):
            r = client.get(f"/v1/jobs/{job_id}/events", headers=ALICE)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"


def test_health_endpoints(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        submit(client, ALICE, prompt="count me", max_tokens=2)
        metrics = client.get("/metrics").text
        assert "tokenrelay_jobs_submitted_total" in metrics
