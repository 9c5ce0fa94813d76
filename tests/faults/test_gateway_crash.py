"""kill -9 of the gateway mid-stream: a new one resumes at Last-Event-ID, nothing lost or twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ALICE
from tests.support.gateways import gateway_process
from tests.support.sse import SseEvent, SseParser, read_events
from tests.support.stack import running
from tests.support.workers import ChildProcess

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKENS = 300
STREAM = {"max_tokens": TOKENS, "provider_options": {"tokens_per_s": 25}}
"""Twelve seconds of tokens: a restarted gateway (2-6 s under load) is up before the job ends."""
READ_BEFORE_KILL = 40


def read_until_killed(client: httpx.Client, path: str, gateway: ChildProcess) -> list[SseEvent]:
    """Read the stream; after ``READ_BEFORE_KILL`` events kill -9 the gateway serving it, and
    keep whatever else had reached the client before the connection broke."""
    events: list[SseEvent] = []
    parser = SseParser()
    with client.stream("GET", path, headers=ALICE) as resp:
        assert resp.status_code == 200, resp.read()
        with pytest.raises(httpx.TransportError):  # the stream breaks; it does not end
            for line in resp.iter_lines():
                ev = parser.feed(line)
                if ev is None:
                    continue
                events.append(ev)
                if len(events) == READ_BEFORE_KILL:
                    gateway.kill()
    return events


def test_kill_9_gateway_then_resume_on_a_new_one(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    port = free_port()
    with (
        running(settings, ["ingest", "worker"]) as ingest_url,
        httpx.Client(timeout=30) as client,
    ):
        with gateway_process(settings, tmp_path, port, "gateway-1") as first:
            r = client.post(
                f"{ingest_url}/v1/jobs",
                json={"prompt": "outlive the gateway", **STREAM},
                headers=ALICE,
            )
            assert r.status_code == 202, r.text
            path = f"{first.url}/v1/jobs/{r.json()['job_id']}/events"
            before = read_until_killed(client, path, first)
        assert not {e.event for e in before} & TERMINAL_EVENT_TYPES, "killed mid-stream"
        cursor = before[-1].id
        assert cursor is not None

        t0 = time.monotonic()
        with gateway_process(settings, tmp_path, port, "gateway-2"):
            ready_at_us = time.time_ns() // 1000
            restart_s = time.monotonic() - t0
            resumed = read_events(client, path, {**ALICE, "Last-Event-ID": cursor})
            whole = read_events(client, path, ALICE)

    completed = whole[-1]
    assert completed.event == "completed"
    assert completed.data["ts"] > ready_at_us, "the job was still running when the resume began"
    ids = [e.id for e in whole]
    assert [e.id for e in resumed] == ids[ids.index(cursor) + 1 :], "resumed right after the cursor"
    joined = before + resumed
    assert [(e.id, e.event, e.data) for e in joined] == [(e.id, e.event, e.data) for e in whole]
    assert len({e.id for e in joined}) == len(joined), "no event twice"
    assert [e.event for e in whole[:2]] == ["queued", "started"]
    tokens = [e for e in whole if e.event == "token"]
    assert [t.data["index"] for t in tokens] == list(range(1, TOKENS + 1)), "no token missing"
    assert completed.data["content"] == "".join(str(t.data["text"]) for t in tokens)
    print(
        f"\nread {len(before)} events, killed the gateway, a new one was ready in "
        f"{restart_s:.2f}s; resumed {len(resumed)} events after id {cursor}"
    )
