from __future__ import annotations

import asyncio

import pytest

from schemas.commands import JobCommand
from schemas.control import Cancel
from schemas.events import JobEvent
from schemas.jobs import JobRequest
from services.core.ids import new_job_id, now_us
from services.worker.attempt import run_attempt
from services.worker.providers.fake import FakeProvider, fake_tokens


def command(**req: object) -> JobCommand:
    return JobCommand(
        job_id=new_job_id(),
        tenant="t",
        submitted_at=now_us(),
        provider="fake",
        model="fake-1",
        request=JobRequest(**{"prompt": "p", **req}),  # type: ignore[arg-type]
    )


async def events_of(cmd: JobCommand) -> list[JobEvent]:
    out: list[JobEvent] = []

    async def emit(ev: JobEvent) -> None:
        out.append(ev)

    terminal = await run_attempt(cmd, FakeProvider(tokens_per_s=0), emit, "w")
    out.append(terminal)
    return out


def test_text_is_deterministic_per_prompt() -> None:
    assert fake_tokens("a", 20) == fake_tokens("a", 20)
    assert fake_tokens("a", 20) != fake_tokens("b", 20)
    assert len(fake_tokens("a", 5)) == 5


async def test_default_length_and_event_numbering() -> None:
    events = await events_of(command())
    assert [e.seq for e in events] == list(range(66))
    assert events[-1].type == "completed"
    assert events[-1].usage.completion_tokens == 64
    assert events[-1].usage.prompt_tokens == 2  # "user: p"


@pytest.mark.parametrize(("kind", "retryable"), [("provider", True), ("auth", False)])
async def test_fail_with_after_n_tokens(kind: str, retryable: bool) -> None:
    events = await events_of(command(provider_options={"fail_with": kind, "fail_after": 3}))
    assert [e.type for e in events] == ["started", "token", "token", "token", "failed"]
    assert events[-1].error_kind == kind
    assert events[-1].retryable is retryable


async def test_timeout_ends_in_failed_timeout() -> None:
    cmd = command(max_tokens=50, timeout_s=0.05, provider_options={"tokens_per_s": 100})
    out: list[JobEvent] = []

    async def emit(ev: JobEvent) -> None:
        out.append(ev)

    terminal = await run_attempt(cmd, FakeProvider(tokens_per_s=100), emit, "w")
    out.append(terminal)
    assert out[-1].type == "failed"
    assert out[-1].error_kind == "timeout"
    assert 0 < sum(e.type == "token" for e in out) < 50


async def test_json_response_format_is_parsed_or_fails() -> None:
    events = await events_of(command(response_format="json", max_tokens=3))
    assert events[-1].type == "failed"
    assert "not JSON" in events[-1].message


async def test_fail_attempts_fails_early_attempts_then_succeeds() -> None:
    opts = {"fail_with": "provider", "fail_attempts": 2}
    first = await events_of(command(provider_options=opts, max_tokens=3))
    assert first[-1].type == "failed"
    third = command(provider_options=opts, max_tokens=3).model_copy(update={"attempt": 3})
    assert (await events_of(third))[-1].type == "completed"


async def test_cancel_closes_the_stream_and_ends_cancelled() -> None:
    cancel = asyncio.Event()
    out: list[JobEvent] = []

    async def emit(ev: JobEvent) -> None:
        out.append(ev)
        if len(out) == 3:
            cancel.set()

    by = Cancel(job_id="j", ts=0, by="t", reason="enough")
    cmd = command(max_tokens=1000, provider_options={"tokens_per_s": 200})
    terminal = await run_attempt(cmd, FakeProvider(tokens_per_s=200), emit, "w", cancel, lambda: by)
    assert terminal.type == "cancelled"
    assert (terminal.by, terminal.reason) == ("t", "enough")
    assert len(out) < 10, "the stream stopped right after the cancel"
