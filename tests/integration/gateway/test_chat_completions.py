"""``POST /v1/chat/completions`` and ``GET /v1/models`` as the official ``openai`` SDK uses
them (sync and async, streamed and not, ``with_raw_response``), against a real stack.

Each answer is a tokenrelay job: the ``x-tokenrelay-job-id`` it names streams,
through ``/v1/jobs/{id}/events``, exactly the text and usage the SDK got.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ALICE, fresh_settings
from tests.support.sse import read_events
from tests.support.stack import running

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One public face with a worker for the module: each test's jobs are its own."""
    settings = fresh_settings(kafka_bootstrap, chdb_url, tmp_path_factory.mktemp("chat"))
    with running(settings, ["ingest", "gateway", "worker"]) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The module's stack outlives each test, and so do the threads its worker starts on
    demand: they end with it."""
    yield


MESSAGES: Any = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "say something about kafka"},
]


@pytest.fixture
def sdk(stack: str) -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes clients of the stack (``key``: another API key), each closed after the test."""
    made: list[openai.OpenAI] = []

    def make(key: str = "key-alice") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{stack}/v1", api_key=key, max_retries=0, timeout=60))
        return made[-1]

    yield make
    for client in made:
        client.close()


def job_events(base: str, job_id: str) -> dict[str, Any]:
    """The job's events by id, as any watcher reads them: its text, terminal event, priority."""
    with httpx.Client(base_url=base, timeout=60) as client:
        events = read_events(client, f"/v1/jobs/{job_id}/events", headers=ALICE)
    return {
        "text": "".join(e.data["text"] for e in events if e.event == "token"),
        "end": events[-1].data,
        "priority": events[0].data["priority"],
    }


def test_a_completion_is_a_job_whose_events_hold_its_answer(
    stack: str, sdk: Callable[..., openai.OpenAI]
) -> None:
    raw = sdk().chat.completions.with_raw_response.create(
        model="fake-1", messages=MESSAGES, max_tokens=12
    )
    job_id = raw.headers["x-tokenrelay-job-id"]
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.id == f"chatcmpl-{job_id}"
    assert answer.model == "fake-1"
    (choice,) = answer.choices
    job = job_events(stack, job_id)
    assert job["end"]["type"] == "completed" and job["priority"] == "normal"
    assert choice.message.role == "assistant" and choice.message.content == job["text"]
    assert choice.finish_reason == job["end"]["finish_reason"]
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 12


def test_a_stream_speaks_openai_chunks_with_usage_and_done(
    stack: str, sdk: Callable[..., openai.OpenAI]
) -> None:
    with sdk().chat.completions.with_streaming_response.create(
        model="fake-1",
        messages=MESSAGES,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Tokenrelay-Priority": "high"},
    ) as response:
        job_id = response.headers["x-tokenrelay-job-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert {c.id for c in chunks} == {f"chatcmpl-{job_id}"}
    assert len({c.created for c in chunks}) == 1 and {c.model for c in chunks} == {"fake-1"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    *content, usage = chunks
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 20
    assert content[0].choices[0].delta.role == "assistant"
    reasons = [c.choices[0].finish_reason for c in content]
    assert reasons[:-1] == [None] * (len(content) - 1) and reasons[-1] in {"length", "stop"}
    text = "".join(c.choices[0].delta.content or "" for c in content)
    job = job_events(stack, job_id)
    assert text == job["text"] and job["priority"] == "high"
    assert len([c for c in content if c.choices[0].delta.content]) == 20  # token by token


def test_without_include_usage_there_is_no_usage_chunk(
    stack: str, sdk: Callable[..., openai.OpenAI]
) -> None:
    chunks = list(
        sdk().chat.completions.create(model="fake-1", messages=MESSAGES, max_tokens=5, stream=True)
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


async def test_the_async_client_streams_and_completes(stack: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{stack}/v1", api_key="key-alice", max_retries=0)
    async with client:
        whole = await client.chat.completions.create(
            model="fake-1", messages=MESSAGES, max_tokens=8
        )
        stream = await client.chat.completions.create(
            model="fake-1", messages=MESSAGES, max_tokens=8, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == whole.choices[0].message.content  # the fake provider: same prompt, same text
    assert whole.usage is not None and whole.usage.completion_tokens == 8


def test_an_idempotency_key_answers_with_the_first_job(
    stack: str, sdk: Callable[..., openai.OpenAI]
) -> None:
    client = sdk()
    headers = {"Idempotency-Key": "chat-once"}
    first = client.chat.completions.with_raw_response.create(
        model="fake-1", messages=MESSAGES, max_tokens=4, extra_headers=headers
    )
    again = client.chat.completions.with_raw_response.create(
        model="fake-1", messages=MESSAGES, max_tokens=4, extra_headers=headers
    )
    assert first.headers["x-tokenrelay-job-id"] == again.headers["x-tokenrelay-job-id"]
    assert first.parse().choices[0].message.content == again.parse().choices[0].message.content


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
    ],
)
def test_what_a_job_cannot_do_is_a_400_naming_the_parameter(
    sdk: Callable[..., openai.OpenAI], extra: dict[str, Any], param: str
) -> None:
    create: Any = sdk().chat.completions.create
    with pytest.raises(openai.BadRequestError) as caught:
        create(model="fake-1", messages=MESSAGES, **extra)
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == param
    assert body["type"] == "invalid_request_error" and body["message"]


def test_errors_come_in_openais_shape(stack: str, sdk: Callable[..., openai.OpenAI]) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(key="not-a-key").chat.completions.create(model="fake-1", messages=MESSAGES)
    assert caught.value.status_code == 401 and caught.value.type == "authentication_error"

    with pytest.raises(openai.BadRequestError) as bad:
        sdk().chat.completions.create(
            model="fake-1", messages=MESSAGES, extra_headers={"X-Tokenrelay-Priority": "asap"}
        )
    assert bad.value.param == "x-tokenrelay-priority"

    r = httpx.post(f"{stack}/v1/chat/completions", json={"model": "fake-1"}, headers=ALICE)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(
        f"{stack}/v1/chat/completions", json={"model": "fake-1", "frob": 1}, headers=ALICE
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "frob"


def test_models_lists_what_jobs_may_name(stack: str, sdk: Callable[..., openai.OpenAI]) -> None:
    models = {m.id for m in sdk().models.list()}
    assert "fake-1" in models and "gpt-4o-mini" in models
    assert httpx.get(f"{stack}/v1/models").status_code == 401


def test_langchain_streams_with_usage(stack: str) -> None:
    from langchain_openai import ChatOpenAI  # noqa: PLC0415 - only this test needs langchain

    chat = ChatOpenAI(
        model="fake-1",
        base_url=f"{stack}/v1",
        api_key="key-alice",  # type: ignore[arg-type]
        max_tokens=9,  # type: ignore[call-arg]
        stream_usage=True,
        max_retries=0,
    )
    chunks = list(chat.stream("say something about kafka"))
    text = "".join(str(c.content) for c in chunks)
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert text and len(usage) == 1 and usage[0]["output_tokens"] == 9
    whole = chat.invoke("say something about kafka")
    assert whole.content == text  # the fake provider: same prompt, same text


def test_litellm_completes_and_streams(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list
    import litellm  # noqa: PLC0415 - slow to import; only this test needs it

    messages = [{"role": "user", "content": "say something about kafka"}]
    common: dict[str, Any] = {
        "model": "openai/fake-1",
        "api_base": f"{stack}/v1",
        "api_key": "key-alice",
        "max_tokens": 7,
    }
    whole = litellm.completion(messages=messages, **common)
    streamed = litellm.completion(messages=messages, stream=True, **common)
    text = "".join(c.choices[0].delta.content or "" for c in streamed)
    assert whole.choices[0].message.content == text and whole.usage.completion_tokens == 7
