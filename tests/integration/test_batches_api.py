"""``POST /v1/batches``, batch pause/resume/cancel and admin retries, over HTTP and the broker.

The first group runs the ingest alone (no worker, no aggregator): what a batch
puts on Kafka, how bad bodies are refused, and how fast a large batch is
accepted. Batch instructions for a batch the same process accepted need no
aggregator either. The last group (``needs the aggregator``) starts one, since
an admin retry reads the job's state from it, as does a batch instruction sent
to an ingest that did not accept the batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from schemas.commands import JobCommand
from schemas.control import Control, parse_control
from schemas.events import JobEvent
from schemas.jobs import Priority
from services.core.kafka import Consumer
from services.core.serde import decode
from services.core.settings import Settings
from tests.conftest import ADMIN, ALICE, API_KEYS, BOB
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.batches import submit_batch
from tests.support.jobs import submit
from tests.support.polling import until
from tests.support.stack import running
from tests.support.topic_reader import TopicReader, by_job, events_reader, of_type

pytestmark = pytest.mark.kafka

NDJSON = {**ALICE, "Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def ingest_alone(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str]]:
    """The ingest alone on fresh topics, ready once it serves (no worker needed): its URL."""
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"b{run}",
        worker_group=f"w{run}",
        api_keys=API_KEYS,  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("data"),
    )
    with running(settings, ["ingest"], ready_path="/healthz") as base:
        yield settings, base


@pytest.fixture
async def ingest(
    ingest_alone: tuple[Settings, str],
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings, base = ingest_alone
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        yield settings, client


def error_of(r: httpx.Response) -> dict[str, str]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


def jsonl(*jobs: object) -> bytes:
    return b"\n".join(orjson.dumps(j) for j in jobs)


def reader(settings: Settings, topic: str) -> TopicReader[Any]:
    if topic == settings.topics.tokens:
        return events_reader(settings.kafka_bootstrap, topic, settings.topic_partitions)
    return TopicReader(
        settings.kafka_bootstrap,
        topic,
        settings.topic_partitions,
        lambda raw: decode(JobCommand, raw),
    )


async def high_watermarks(settings: Settings) -> int:
    """Records ever written to the tokens, lifecycle and job topics (to see that nothing was)."""
    topics = [
        settings.topics.tokens,
        settings.topics.lifecycle,
        *settings.topics.jobs_by_priority(),
    ]
    async with Consumer(settings.kafka_bootstrap, f"hw-{uuid.uuid4().hex}") as c:
        return sum(
            [
                (await c.watermarks(t, p))[1]
                for t in topics
                for p in range(settings.topic_partitions)
            ]
        )


# --- submitting -----------------------------------------------------------------------------


async def test_a_json_batch_puts_each_job_on_kafka_with_the_batch_id(
    ingest: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = ingest
    priorities = ["urgent", "normal", "low", None, "high"]
    jobs = [{"prompt": f"p{i}", **({"priority": p} if p else {})} for i, p in enumerate(priorities)]
    r = await client.post("/v1/batches", json={"jobs": jobs}, headers=ALICE)
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"batch_id", "job_ids"}
    batch_id, ids = body["batch_id"], body["job_ids"]
    assert len(ids) == len(set(ids)) == 5

    async with reader(settings, settings.topics.tokens) as log:
        events: list[JobEvent] = await log.until(
            lambda ev: {e.job_id for e in of_type(ev, "queued")} >= set(ids)
        )
    for job_id, priority in zip(ids, priorities, strict=True):
        (queued,) = of_type(by_job(events, job_id), "queued")
        assert queued.batch_id == batch_id  # type: ignore[union-attr]
        assert queued.tenant == "alice"
        assert queued.priority == (priority or "normal")  # type: ignore[union-attr]
        assert (queued.attempt, queued.seq) == (0, 0)

    async with reader(settings, settings.topics.jobs[Priority.URGENT]) as urgent:
        commands: list[JobCommand] = await urgent.until(lambda cs: ids[0] in {c.job_id for c in cs})
    (command,) = [c for c in commands if c.job_id == ids[0]]
    assert (command.batch_id, command.tenant, command.attempt) == (batch_id, "alice", 1)
    assert command.request.prompt == "p0"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl"])
async def test_a_jsonl_batch_is_one_job_per_non_empty_line(
    ingest: tuple[Settings, httpx.AsyncClient], content_type: str
) -> None:
    _, client = ingest
    body = b"\r\n".join([orjson.dumps({"prompt": "a"}), b"", orjson.dumps({"prompt": "b"}), b""])
    r = await client.post(
        "/v1/batches", content=body, headers={**ALICE, "Content-Type": content_type}
    )
    assert r.status_code == 202, r.text
    assert len(r.json()["job_ids"]) == 2


@pytest.mark.parametrize(
    ("content_type", "body", "status", "field", "says"),
    [
        (
            "application/json",
            orjson.dumps({"jobs": [{"prompt": "ok"}, {"prompt": "x", "model": ""}]}),
            422,
            "jobs[1].model",
            "jobs[1]: model:",
        ),
        (
            "application/json",
            orjson.dumps({"jobs": [{"prompt": "ok"}, {"prompt": "x", "priority": "asap"}]}),
            422,
            "jobs[1].priority",
            "jobs[1]: priority:",
        ),
        (
            "application/x-ndjson",
            jsonl({"prompt": "ok"}, {"prompt": "ok"}, {"prompt": ""}),
            422,
            "lines[2].prompt",
            "line 3: prompt:",
        ),
        (
            "application/x-ndjson",
            jsonl({"prompt": "ok"}, {"messages": [{"role": "robot", "content": "x"}]}),
            422,
            "lines[1].messages[0].role",
            "line 2: messages[0].role:",
        ),
        (
            "application/x-ndjson",
            b'{"prompt": "ok"}\n{"prompt":',
            422,
            "lines[1]",
            "line 2: not valid JSON",
        ),
        (
            "application/x-ndjson",
            jsonl({"prompt": "ok", "provider_options": {"fail_with": "meteor"}}),
            422,
            "lines[0].provider_options",
            "line 1: provider_options:",
        ),
        ("application/json", b'{"jobs": [', 400, "body", "not valid JSON"),
        ("application/json", b'{"jobs": []}', 422, "jobs", "at least one job"),
        ("application/json", b'{"jobs": [], "x": 1}', 422, "x", "Extra inputs"),
        ("application/json", b'[{"prompt": "a"}]', 422, "body", "jobs"),
        ("application/x-ndjson", b"\n\n", 422, "jobs", "at least one job"),
        ("text/plain", b"{}", 415, "Content-Type", "application/x-ndjson"),
    ],
)
async def test_a_bad_batch_is_refused_naming_the_job_and_field_and_nothing_is_published(
    ingest: tuple[Settings, httpx.AsyncClient],
    content_type: str,
    body: bytes,
    status: int,
    field: str,
    says: str,
) -> None:
    settings, client = ingest
    before = await high_watermarks(settings)
    r = await client.post(
        "/v1/batches", content=body, headers={**ALICE, "Content-Type": content_type}
    )
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["field"] == field
    assert says in err["message"]
    assert await high_watermarks(settings) == before


async def test_a_batch_over_the_limit_is_413_naming_jobs(
    ingest: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = ingest
    limit = settings.batch_max_jobs
    r = await client.post(
        "/v1/batches", content=jsonl(*[{"prompt": "a"}] * (limit + 1)), headers=NDJSON
    )
    assert r.status_code == 413
    err = error_of(r)
    assert (err["code"], err["field"]) == ("too_many_jobs", "jobs")
    assert str(limit) in err["message"]


async def test_ten_thousand_jobs_are_accepted_in_seconds(
    ingest: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = ingest
    n = settings.batch_max_jobs
    body = jsonl(*[{"prompt": f"job {i}", "max_tokens": 5} for i in range(n)])
    started = time.perf_counter()
    r = await client.post("/v1/batches", content=body, headers=NDJSON)
    took = time.perf_counter() - started
    assert r.status_code == 202, r.text
    batch_id, ids = r.json()["batch_id"], set(r.json()["job_ids"])
    assert len(ids) == n
    print(f"\n{n} jobs ({len(body) / 1e6:.1f} MB of JSONL) accepted in {took:.2f} s")
    assert took < 15

    async with reader(settings, settings.topics.tokens) as log:
        events = await log.until(
            lambda ev: len({e.job_id for e in of_type(ev, "queued")} & ids) == n,
            what="every queued event",
        )
    assert {e.batch_id for e in of_type(events, "queued") if e.job_id in ids} == {batch_id}  # type: ignore[union-attr]


# --- batch instructions and retries without the aggregator -----------------------------------


async def batch_controls(settings: Settings, batch_id: str, n: int) -> list[Control]:
    """The first ``n`` instructions about the batch on the control topic, in order."""

    def of_batch(cs: list[Control]) -> list[Control]:
        return [c for c in cs if getattr(c, "batch_id", None) == batch_id]

    async with TopicReader(
        settings.kafka_bootstrap, settings.topics.control, settings.topic_partitions, parse_control
    ) as log:
        return of_batch(await log.until(lambda cs: len(of_batch(cs)) >= n, what="instructions"))


async def test_the_owner_and_admins_may_pause_resume_and_cancel_a_batch(
    ingest: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = ingest
    batch_id, _ = await submit_batch(client, 2)
    path = f"/v1/batches/{batch_id}"

    r = await client.post(f"{path}/pause", headers=ALICE)
    assert (r.status_code, r.json()) == (202, {"batch_id": batch_id, "status": "pausing"})
    r = await client.post(f"{path}/resume", headers=ALICE)
    assert (r.status_code, r.json()) == (202, {"batch_id": batch_id, "status": "resuming"})
    r = await client.post(f"{path}/cancel", json={"reason": "done"}, headers=ADMIN)
    assert (r.status_code, r.json()) == (202, {"batch_id": batch_id, "status": "cancelling"})

    for action in ("pause", "resume", "cancel"):
        err = error_of(await client.post(f"{path}/{action}", headers=BOB))
        assert (err["code"], err["field"]) == ("not_found", "batch_id")
    assert error_of(await client.post("/v1/batches/nope/pause", headers=ALICE))["field"] == (
        "batch_id"
    )
    r = await client.post(f"{path}/cancel", json={"reason": 5}, headers=ALICE)
    assert r.status_code == 422
    assert (await client.post(f"{path}/pause")).status_code == 401

    mine = await batch_controls(settings, batch_id, 3)
    assert [(c.type, c.by) for c in mine] == [
        ("pause_batch", "alice"),
        ("resume_batch", "alice"),
        ("cancel_batch", "admin:ops"),
    ]
    assert mine[2].reason == "done"  # type: ignore[union-attr]


async def test_only_an_admin_may_retry_a_job(ingest: tuple[Settings, httpx.AsyncClient]) -> None:
    _, client = ingest
    job_id = await submit(client, max_tokens=1)
    err = error_of(await client.post(f"/v1/jobs/{job_id}/retry", headers=ALICE))
    assert err["code"] == "forbidden"
    assert (await client.post(f"/v1/jobs/{job_id}/retry", headers=BOB)).status_code == 403
    err = error_of(await client.post("/v1/jobs/not-a-job/retry", headers=ADMIN))
    assert (err["code"], err["field"]) == ("not_found", "job_id")


# --- needs the aggregator ------------------------------------------------------------------


def state_of(agg: httpx.AsyncClient, job_id: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def probe() -> dict[str, Any]:
        r = await agg.get(f"/jobs/{job_id}")
        return r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}

    return probe


async def test_admin_retries_of_failed_and_cancelled_jobs_run_needs_aggregator(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with (
        aggregator_process(settings, tmp_path),
        running(settings, ["ingest", "worker"]) as base,
    ):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            httpx.AsyncClient(base_url=settings.aggregator_url, timeout=10) as agg,
            events_reader(settings.kafka_bootstrap, settings.topics.tokens, 3) as log,
        ):
            failing = await submit(
                client, max_tokens=3, provider_options={"fail_with": "auth", "fail_attempts": 1}
            )
            await until(state_of(agg, failing), lambda s: s["status"] == "failed")
            r = await client.post(f"/v1/jobs/{failing}/retry", headers=ADMIN)
            assert r.status_code == 202, r.text
            assert r.json() == {"job_id": failing, "status": "queued", "attempt": 2}

            slow = await submit(client, max_tokens=40, provider_options={"tokens_per_s": 20})
            await until(state_of(agg, slow), lambda s: s["status"] == "running")
            assert (await client.post(f"/v1/jobs/{slow}/cancel", headers=ALICE)).status_code == 202
            await until(state_of(agg, slow), lambda s: s["status"] == "cancelled")
            r = await client.post(f"/v1/jobs/{slow}/retry", headers=ADMIN)
            assert r.status_code == 202, r.text

            done = await until(state_of(agg, failing), lambda s: s["status"] == "succeeded")
            assert done["attempt"] == 2
            err = error_of(await client.post(f"/v1/jobs/{failing}/retry", headers=ADMIN))
            assert (err["code"], err["field"]) == ("conflict", "status")
            unknown = "01a207b5-22df-77b8-b58d-924b943ae4ae"
            err = error_of(await client.post(f"/v1/jobs/{unknown}/retry", headers=ADMIN))
            assert (err["code"], err["field"]) == ("not_found", "job_id")
            events = await log.until(
                lambda ev: bool(of_type(by_job(ev, slow), "completed")), what="the retry ran"
            )

    assert [e.seq for e in of_type(by_job(events, failing), "queued")] == [0, 1]
    assert [e.type for e in by_job(events, slow) if e.type not in ("token",)] == [
        "queued",
        "started",
        "cancelled",
        "queued",
        "started",
        "completed",
    ]


async def test_a_batch_accepted_elsewhere_is_found_through_the_aggregator_needs_aggregator(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with (
        aggregator_process(settings, tmp_path),
        running(settings, ["ingest", "worker"]) as base,
        running(settings, ["ingest"], ready_path="/healthz") as other,
    ):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            httpx.AsyncClient(base_url=other, timeout=30) as elsewhere,
            httpx.AsyncClient(base_url=settings.aggregator_url, timeout=10) as agg,
        ):
            batch_id, _ = await submit_batch(client, 3, max_tokens=2)

            async def batch() -> int:
                return (await agg.get(f"/batches/{batch_id}")).status_code

            await until(batch, lambda status: status == 200)
            r = await elsewhere.post(f"/v1/batches/{batch_id}/pause", headers=ALICE)
            assert r.status_code == 202, r.text
            r = await elsewhere.post(f"/v1/batches/{batch_id}/pause", headers=BOB)
            assert error_of(r)["field"] == "batch_id"
            r = await elsewhere.post(f"/v1/batches/{batch_id}/resume", headers=ADMIN)
            assert r.status_code == 202, r.text
            unknown = "01a207b5-22df-77b8-b58d-924b943ae4ae"
            r = await elsewhere.post(f"/v1/batches/{unknown}/cancel", headers=ADMIN)
            assert error_of(r)["code"] == "not_found"
