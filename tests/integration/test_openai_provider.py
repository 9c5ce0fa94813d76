"""The openai provider, with the real SDK, against a server speaking OpenAI's wire format."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from schemas.commands import JobCommand
from schemas.events import JobEvent
from schemas.jobs import JobRequest
from services.core.ids import new_job_id, now_us
from services.worker.attempt import run_attempt
from services.worker.providers.base import ProviderError
from services.worker.providers.openai_chat import OpenAIProvider
from tests.conftest import ALICE
from tests.support.openai_server import REPLY, RETRY_AFTER_S, OpenAIServer, openai_server
from tests.support.sse import read_events
from tests.support.stack import running


@pytest.fixture
def server() -> Iterator[tuple[str, OpenAIServer]]:
    with openai_server() as s:
        yield s


def command(model: str, **req: object) -> JobCommand:
    return JobCommand(
        job_id=new_job_id(),
        tenant="alice",
        submitted_at=now_us(),
        provider="openai",
        model=model,
        request=JobRequest(prompt="hi", **req),  # type: ignore[arg-type]
    )


async def run(base_url: str, model: str, **req: object) -> list[JobEvent]:
    provider = OpenAIProvider("sk-test", base_url)
    events: list[JobEvent] = []

    async def emit(ev: JobEvent) -> None:
        events.append(ev)

    try:
        terminal = await run_attempt(command(model, **req), provider, emit, "w1")
        events.append(terminal)
    finally:
        await provider.close()
    return events


async def test_happy_path_streams_deltas_and_reports_usage(
    server: tuple[str, OpenAIServer],
) -> None:
    url, srv = server
    events = await run(url, "ok", temperature=0.2)
    assert [e.type for e in events] == ["started", *["token"] * len(REPLY), "completed"]
    done = events[-1]
    assert done.type == "completed"
    assert done.content == "".join(REPLY)
    assert done.finish_reason == "stop"
    assert done.usage.prompt_tokens == 11
    assert done.usage.completion_tokens == len(REPLY)
    assert done.ttft_ms is not None and done.ttft_ms >= 0
    sent = srv.requests[-1]
    assert sent["body"]["stream"] is True
    assert sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["body"]["temperature"] == 0.2
    assert sent["auth"] == "Bearer sk-test"


async def test_max_tokens_is_passed_and_finish_reason_is_length(
    server: tuple[str, OpenAIServer],
) -> None:
    url, srv = server
    events = await run(url, "ok", max_tokens=4)
    done = events[-1]
    assert done.type == "completed"
    assert done.finish_reason == "length"
    assert done.content == "".join(REPLY[:4])
    assert srv.requests[-1]["body"]["max_tokens"] == 4


@pytest.mark.parametrize(
    ("model", "kind", "retryable"),
    [
        ("rate-limited", "rate_limited", True),
        ("bad-key", "auth", False),
        ("server-error", "provider", True),
        ("broken", "provider", True),
        ("error-event", "provider", True),
    ],
)
async def test_errors_end_in_a_failed_event_of_the_right_kind(
    server: tuple[str, OpenAIServer], model: str, kind: str, retryable: bool
) -> None:
    url, _ = server
    events = await run(url, model)
    last = events[-1]
    assert last.type == "failed"
    assert last.error_kind == kind
    assert last.retryable is retryable
    if model in ("broken", "error-event"):
        assert [e.type for e in events[1:-1]] == ["token"] * 3


async def test_rate_limit_keeps_retry_after(server: tuple[str, OpenAIServer]) -> None:
    url, _ = server
    provider = OpenAIProvider("sk-test", url)
    try:
        with pytest.raises(ProviderError) as info:
            async for _ in provider.stream(command("rate-limited")):
                pass
    finally:
        await provider.close()
    assert info.value.retry_after_s == RETRY_AFTER_S


@pytest.mark.kafka
def test_pipeline_runs_openai_jobs(server: tuple[str, OpenAIServer], make_settings) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    settings = make_settings(openai_api_key="sk-test", openai_base_url=url, openai_model="ok")
    with (
        running(settings, ["ingest", "gateway", "worker"]) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        r = client.post("/v1/jobs", json={"prompt": "hi"}, headers=ALICE)
        assert r.status_code == 202, r.text
        events = read_events(client, r.json()["stream_url"], ALICE)
        bad = client.post("/v1/jobs", json={"prompt": "hi", "model": "bad-key"}, headers=ALICE)
        failed = read_events(client, bad.json()["stream_url"], ALICE)
    assert events[-1].event == "completed"
    assert events[-1].data["content"] == "".join(REPLY)
    assert events[-1].data["usage"]["completion_tokens"] == len(REPLY)
    assert failed[-1].event == "failed"
    assert failed[-1].data["error_kind"] == "auth"
