"""OpenAI's chat completions wire format over jobs: the request mapping and the chunks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.jobs import Priority, ResponseFormat
from services.gateway.chat_completions import chunk_of
from services.gateway.openai_wire import (
    ChunkWriter,
    OpenAIError,
    chat_request,
    completion,
    failure,
    priority_of,
)
from services.gateway.stream_item import StreamItem

BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_a_body_becomes_the_job_it_asks_for() -> None:
    body = {
        **BODY,
        "messages": [
            {"role": "developer", "content": "terse"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        "max_completion_tokens": 30,
        "temperature": 0.5,
        "response_format": {"type": "json_object"},
        "top_p": 0.9,
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
    }
    req = chat_request(body, Priority.HIGH, "openai")
    job = req.job
    assert [(m.role, m.content) for m in job.messages or []] == [
        ("system", "terse"),
        ("user", "ab"),
    ]
    assert (job.model, job.provider, job.priority) == ("gpt-4o-mini", "openai", Priority.HIGH)
    assert (job.max_tokens, job.temperature) == (30, 0.5)
    assert job.response_format is ResponseFormat.JSON
    assert job.provider_options == {"top_p": 0.9, "seed": 7}
    assert req.stream and req.include_usage


def test_the_fake_provider_gets_no_sampling_options() -> None:
    job = chat_request({**BODY, "model": "fake-1", "top_p": 0.5}, Priority.NORMAL, "fake").job
    assert job.provider == "fake" and job.provider_options == {}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 3}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"frob": 1}, "frob"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"model": ""}, "model"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_what_cannot_run_is_a_400_naming_the_parameter(change: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        chat_request({**BODY, **change}, Priority.NORMAL, "openai")
    assert (caught.value.status, caught.value.param) == (400, param)
    assert caught.value.type == "invalid_request_error"


def test_the_priority_header() -> None:
    assert priority_of(None) is Priority.NORMAL and priority_of(" URGENT ") is Priority.URGENT
    with pytest.raises(OpenAIError, match="one of urgent, high, normal, low"):
        priority_of("asap")


def frames(data: bytes) -> list[Any]:
    out = []
    for frame in data.decode().split("\n\n"):
        if frame:
            payload = frame.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def test_chunks_share_one_id_the_role_comes_first_and_the_end_carries_reason_usage_done() -> None:
    w = ChunkWriter("chatcmpl-j", 1700000000, "m", include_usage=True)
    chunks = frames(
        w.token("Hel")
        + w.token("lo")
        + w.end("length", {"prompt_tokens": 3, "completion_tokens": 2})
    )
    *deltas, usage, done = chunks
    assert done == "[DONE]"
    assert {c["id"] for c in [*deltas, usage]} == {"chatcmpl-j"}
    assert [c["choices"][0]["delta"] for c in deltas] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in deltas] == [None, None, "length"]
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }


def test_failures_map_to_openai_errors() -> None:
    rate = failure({"type": "failed", "error_kind": "rate_limited", "message": "slow down"})
    assert (rate.status, rate.type, rate.code) == (429, "rate_limit_error", "rate_limited")
    bad = failure({"type": "failed", "error_kind": "invalid_request", "message": "no"})
    assert (bad.status, bad.type) == (400, "invalid_request_error")
    upstream = failure({"type": "failed", "error_kind": "auth", "message": "key"})
    assert (upstream.status, upstream.type) == (502, "api_error")
    cancelled = failure({"type": "cancelled", "by": "alice"})
    assert (cancelled.status, cancelled.code) == (409, "cancelled")
    (event,) = frames(ChunkWriter.error(rate))
    assert event == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }


def test_a_whole_completion() -> None:
    event = {
        "content": "hi",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    body = completion("chatcmpl-j", 5, "m", event)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None}
    assert body["usage"]["total_tokens"] == 2


def item(offset: int, type_: str, attempt: int, **fields: Any) -> StreamItem:
    raw = orjson.dumps({"type": type_, "job_id": "j", "attempt": attempt, **fields})
    return StreamItem(offset, type_, attempt, offset, raw)


def answer(items: list[StreamItem]) -> tuple[ChunkWriter, list[Any]]:
    w = ChunkWriter("chatcmpl-j", 1700000000, "m", include_usage=False)
    return w, frames(b"".join(chunk_of(w, i) for i in items))


def texts(chunks: list[Any]) -> str:
    deltas = [c["choices"][0]["delta"] for c in chunks if isinstance(c, dict) and c.get("choices")]
    return "".join(d.get("content", "") for d in deltas)


@pytest.mark.parametrize(
    "between",
    [
        pytest.param([("retrying", 1, {"error_kind": "provider", "message": "boom"})], id="retry"),
        pytest.param([("started", 2, {})], id="handed-on"),  # a worker or the broker failed
        pytest.param([], id="tokens-only"),  # the new attempt's started was not in view
    ],
)
def test_a_job_that_starts_over_after_text_went_out_ends_the_answer_with_an_error(
    between: list[tuple[str, int, dict[str, Any]]],
) -> None:
    first = [item(0, "started", 1), item(1, "token", 1, text="Hel"), item(2, "token", 1, text="l")]
    middle = [item(3 + i, t, a, **f) for i, (t, a, f) in enumerate(between)]
    again = [
        item(10, "token", 2, text="Hi"),
        item(11, "token", 2, text=" there"),
        item(12, "completed", 2, content="Hi there", finish_reason="stop"),
    ]
    w, chunks = answer([*first, *middle, *again])
    assert texts(chunks) == "Hell", "no text of the second attempt joins the first's"
    error = chunks[-1]["error"]
    assert "/v1/jobs/j/events" in error["message"] and "again" in error["message"]
    assert "[DONE]" not in chunks and w.over


def test_a_retry_before_any_text_goes_on_as_the_answer() -> None:
    _, chunks = answer(
        [
            item(0, "started", 1),
            item(1, "retrying", 1, error_kind="provider", message="boom"),
            item(2, "started", 2),
            item(3, "token", 2, text="Hi"),
            item(4, "completed", 2, content="Hi", finish_reason="stop"),
        ]
    )
    assert texts(chunks) == "Hi" and chunks[-1] == "[DONE]"
    assert not any("error" in c for c in chunks if isinstance(c, dict))


def test_events_of_an_earlier_attempt_after_the_answer_began_are_skipped() -> None:
    _, chunks = answer(
        [
            item(0, "started", 2),
            item(1, "token", 2, text="Hi"),
            item(2, "token", 1, text="stale"),  # a worker that had not stopped yet
            item(3, "token", 2, text="!"),
            item(4, "completed", 2, content="Hi!", finish_reason="stop"),
        ]
    )
    assert texts(chunks) == "Hi!" and chunks[-1] == "[DONE]"
