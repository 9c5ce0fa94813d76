"""``ChatStream``: OpenAI's chat-completion events read from bytes however they are cut."""

from __future__ import annotations

import orjson
import pytest

from schemas.events import ErrorKind, Usage
from services.worker.providers.base import ProviderError
from services.worker.providers.openai_chat import ChatStream


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "choices": [choice]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
STREAM = (
    event({"role": "assistant", "content": ""})
    + event({"content": "Hel"})
    + b": keep-alive\n\n"
    + event({"content": "lo, "})
    + event({"content": "w\u00f6rld"})
    + event({}, "stop")
    + USAGE
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(STREAM)])
def test_any_cut_of_the_bytes_gives_the_same_deltas_finish_and_usage(size: int) -> None:
    reader = ChatStream()
    texts = []
    for i in range(0, len(STREAM), size):
        texts += reader.feed(STREAM[i : i + size])
    assert texts == ["Hel", "lo, ", "w\u00f6rld"]
    assert reader.finish_reason == "stop"
    assert reader.usage == Usage(prompt_tokens=3, completion_tokens=4)
    assert reader.done


def test_crlf_lines_and_data_over_two_lines_are_one_event() -> None:
    reader = ChatStream()
    body = (
        b'data: {"choices": [{"delta": {"content": "a"},\r\ndata: "finish_reason": null}]}\r\n\r\n'
    )
    assert reader.feed(body) == ["a"]
    assert reader.finish_reason is None and not reader.done


def test_an_error_event_mid_stream_is_a_retryable_provider_error() -> None:
    reader = ChatStream()
    assert reader.feed(event({"content": "a"})) == ["a"]
    with pytest.raises(ProviderError) as raised:
        reader.feed(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
    assert raised.value.kind is ErrorKind.PROVIDER and raised.value.retryable
    assert "overloaded" in raised.value.message


def test_an_event_that_is_not_json_is_a_provider_error_naming_it() -> None:
    with pytest.raises(ProviderError, match="unreadable stream event"):
        ChatStream().feed(b"data: {not json\n\n")
