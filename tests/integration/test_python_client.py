"""The Python client (``clients/python``, ``tokenrelay_client``) against a real stack with
the aggregator and analytics, as a user calls it: submit, tokens, wait, result, paging,
batches, analytics, and errors carrying the API's ``{code, message, field}``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tokenrelay_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    CompletedEvent,
    NotFoundError,
    TokenrelayError,
)

from tests.conftest import fresh_settings
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.stack import running

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def api_url(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One stack for the module (each test's jobs and batches are its own)."""
    root = tmp_path_factory.mktemp("client")
    settings = with_aggregator_port(
        fresh_settings(kafka_bootstrap, chdb_url, root / "data", state_store="memory://")
    )
    with (
        aggregator_process(settings, root),
        running(settings, ["ingest", "gateway", "worker", "analytics"]) as base,
    ):
        yield base


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The module's stack outlives each test, and so do the threads its worker starts on
    demand: they end with it."""
    yield


@pytest.fixture
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, api_key="key-alice") as c:
        yield c


def test_submit_stream_its_tokens_wait_and_read_the_result(client: Client) -> None:
    job = client.submit("tell me about kafka", max_tokens=25, metadata={"from": "sdk"})
    assert job.status == "queued" and job.stream_token
    text = "".join(client.tokens(job.job_id))
    state = client.wait(job.job_id)
    assert state.status == "succeeded" and state.content == text
    assert state.usage is not None and state.usage.completion_tokens == 25
    assert client.result(job.job_id)["content"] == text
    events = list(client.stream(job.job_id))  # a finished job replays whole
    assert isinstance(events[-1], CompletedEvent) and events[-1].content == text
    assert [e.type for e in events[:2]] == ["queued", "started"]
    resumed = list(client.stream(job.job_id, last_event_id=events[5].id))
    assert [e.id for e in resumed] == [e.id for e in events[6:]]


async def test_the_async_client_does_the_same(api_url: str) -> None:
    async with AsyncClient(api_url, api_key="key-alice") as client:
        job = await client.submit(messages=[{"role": "user", "content": "hi"}], max_tokens=10)
        text = "".join([t async for t in client.tokens(job.job_id)])
        state = await client.wait(job.job_id)
        batch = await client.batches.submit({"prompt": f"a{i}", "max_tokens": 2} for i in range(3))
        for job_id in batch.job_ids or []:
            await client.wait(job_id)
        listed = [j.job_id async for j in client.jobs.list(batch_id=batch.batch_id, page_size=2)]
        assert (await client.batches.get(batch.batch_id)).total == 3
        with pytest.raises(TokenrelayError) as refused:
            await client.retry(job.job_id)  # alice is no admin
    assert state.status == "succeeded" and state.content == text
    assert sorted(listed) == sorted(batch.job_ids or [])
    assert refused.value.status == 403


def test_jobs_list_walks_every_page_of_a_batch(client: Client) -> None:
    batch = client.batches.submit({"prompt": f"line {i}", "max_tokens": 3} for i in range(5))
    assert batch.job_ids is not None and len(batch.job_ids) == 5
    give_up = time.monotonic() + 60
    while (got := client.batches.get(batch.batch_id)).status != "succeeded":
        assert time.monotonic() < give_up, got
        time.sleep(0.2)
    listed = list(client.jobs.list(batch_id=batch.batch_id, page_size=2))
    assert sorted(j.job_id for j in listed) == sorted(batch.job_ids)
    assert {j.status for j in listed} == {"succeeded"}
    assert got.progress_pct == 100.0


def test_a_batch_paused_resumed_and_cancelled(client: Client) -> None:
    batch = client.batches.submit(
        {"prompt": f"slow {i}", "max_tokens": 200, "provider_options": {"tokens_per_s": 5}}
        for i in range(3)
    )
    assert client.batches.pause(batch.batch_id)["status"] == "pausing"
    assert client.batches.resume(batch.batch_id)["status"] == "resuming"
    assert client.batches.cancel(batch.batch_id)["status"] == "cancelling"
    states = [client.wait(j) for j in batch.job_ids or []]
    assert {s.status for s in states} == {"cancelled"}


def test_analytics_count_what_ran(client: Client, api_url: str) -> None:
    client.wait(client.submit("priced", max_tokens=4).job_id)
    give_up = time.monotonic() + 30
    while not (rows := client.analytics.cost()):
        assert time.monotonic() < give_up
        time.sleep(0.3)
    assert rows[0]["model"] == "fake-1" and rows[0]["jobs"] >= 1
    with Client(api_url, api_key="key-admin") as admin:
        answer = admin.analytics.sql("SELECT count() AS n FROM jobs")
    assert answer["columns"] == ["n"] and answer["rows"][0][0] >= 1


def test_errors_carry_the_apis_code_message_and_field(client: Client, api_url: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.get("01a24a00-0000-7000-8000-000000000000")
    assert missing.value.field == "job_id" and missing.value.status == 404
    with pytest.raises(TokenrelayError) as invalid:
        client.submit("x", max_tokens=0)
    assert (invalid.value.status, invalid.value.field) == (422, "max_tokens")
    with Client(api_url, api_key="wrong") as stranger, pytest.raises(AuthenticationError):
        stranger.submit("x")
    with pytest.raises(NotFoundError):  # a stream of no job is not retried
        list(client.stream("01a24a00-0000-7000-8000-000000000000"))
