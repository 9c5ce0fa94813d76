"""Job state through the public API: reads, results, lists, queues, job-state topic, changelog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.core.settings import Settings
from tests.conftest import ADMIN, ALICE, BOB
from tests.support.aggregators import (
    aggregator_process,
    stack_with_aggregator,
    with_aggregator_port,
)
from tests.support.jobs import submit
from tests.support.polling import finished, state_probe, until
from tests.support.stack import running
from tests.support.topic_reader import TopicReader, by_job, events_reader, of_type

pytestmark = pytest.mark.kafka


async def test_a_job_read_while_it_runs_and_after_it_ended(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            slow = await submit(c, max_tokens=80, provider_options={"tokens_per_s": 40})
            running_state = await until(
                state_probe(c, slow), lambda s: s["status"] == "running" and s["token_count"] > 0
            )
            assert running_state["priority"] == "normal"
            assert running_state["partition"] is not None
            r = await c.get(f"/v1/jobs/{slow}/result", headers=ALICE)
            assert r.status_code == 409, r.text
            assert r.json()["error"]["field"] == "status"

            done = await until(state_probe(c, slow), finished)
            assert done["status"] == "succeeded"
            assert done["token_count"] == 80
            assert done["attempt"] == 1
            assert done["usage"]["completion_tokens"] == 80
            result = (await c.get(f"/v1/jobs/{slow}/result", headers=ALICE)).json()
            async with events_reader(
                settings.kafka_bootstrap, settings.topics.tokens, settings.topic_partitions
            ) as reader:
                events = await reader.until(
                    lambda evs: bool(of_type(by_job(evs, slow), "completed"))
                )
            completed = of_type(by_job(events, slow), "completed")[0]
            assert result["content"] == completed.content  # type: ignore[union-attr]
            assert result["status"] == "succeeded"
            assert result["duration_ms"] == completed.duration_ms  # type: ignore[union-attr]

            assert (await c.get(f"/v1/jobs/{slow}", headers=BOB)).status_code == 404
            assert (await c.get(f"/v1/jobs/{slow}/result", headers=BOB)).status_code == 404
            assert (await c.get(f"/v1/jobs/{slow}", headers=ADMIN)).status_code == 200
            assert (await c.get("/v1/jobs/nope", headers=ALICE)).status_code == 404
            assert (await c.get(f"/v1/jobs/{slow}")).status_code == 401


async def test_lists_page_newest_first_and_only_the_callers_jobs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            mine = [await submit(c, max_tokens=3, priority="high") for _ in range(7)]
            theirs = [await submit(c, headers=BOB, max_tokens=3) for _ in range(3)]
            for job in mine:
                await until(state_probe(c, job), finished)
            for job in theirs:
                await until(state_probe(c, job, BOB), finished)

            seen: list[dict[str, Any]] = []
            cursor = None
            while True:
                params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
                r = await c.get("/v1/jobs", params=params, headers=ALICE)
                assert r.status_code == 200, r.text
                body = r.json()
                seen += body["jobs"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert [j["job_id"] for j in seen] == list(reversed(mine)), "newest first, no gap"
            queued_at = [j["queued_at"] for j in seen]
            assert queued_at == sorted(queued_at, reverse=True)

            everyone = (await c.get("/v1/jobs", params={"limit": 50}, headers=ADMIN)).json()
            assert {j["job_id"] for j in everyone["jobs"]} == set(mine) | set(theirs)
            high = await c.get("/v1/jobs", params={"priority": "high"}, headers=BOB)
            assert high.json()["jobs"] == []
            ok = await c.get("/v1/jobs", params={"status": "succeeded"}, headers=BOB)
            assert {j["job_id"] for j in ok.json()["jobs"]} == set(theirs)

            bad = await c.get("/v1/jobs", params={"status": "exploded"}, headers=ALICE)
            assert bad.status_code == 422
            assert bad.json()["error"]["field"] == "status"
            bad = await c.get("/v1/jobs", params={"cursor": "garbage"}, headers=ALICE)
            assert bad.status_code == 422, bad.text

            queues = (await c.get("/v1/queues", headers=ALICE)).json()["queues"]
            assert [q["priority"] for q in queues] == ["urgent", "high", "normal", "low"]
            assert all(q["queued"] == 0 and q["running"] == 0 for q in queues)
            lag = {q["priority"]: q["consumer_lag"] for q in queues}
            assert lag == {"urgent": 0, "high": 0, "normal": 0, "low": 0}


async def test_job_state_topic_and_a_changelog_that_does_not_grow_with_tokens(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            job = await submit(c, max_tokens=2000, provider_options={"tokens_per_s": 1000})
            state = await until(state_probe(c, job), finished)
            assert (state["status"], state["token_count"]) == ("succeeded", 2000)

        changelog = f"{settings.topic_prefix}-aggregator-jobs-changelog"
        async with TopicReader(
            settings.kafka_bootstrap, changelog, settings.topic_partitions, lambda raw: raw
        ) as log_reader:
            await log_reader.until(
                lambda _: any(
                    r.key == job.encode() and b'"succeeded"' in (r.value or b"")
                    for r, _v in log_reader.items
                ),
                what="the final state in the changelog",
            )
            records = [r for r, _v in log_reader.items if r.key == job.encode()]
        print(f"\nchangelog records for a 2000-token job: {len(records)}")
        assert 3 <= len(records) <= 36, "lifecycle and a few ticks a second, not a write per token"

        async with TopicReader(
            settings.kafka_bootstrap,
            settings.topics.job_state,
            settings.topic_partitions,
            lambda raw: raw,
        ) as public:
            await public.until(
                lambda _: any(
                    r.key == job.encode() and b'"succeeded"' in (r.value or b"")
                    for r, _v in public.items
                ),
                what="the final state on job-state",
            )
            last = [r for r, _v in public.items if r.key == job.encode()][-1]
        assert orjson.loads(last.value or b"") == state


async def test_clean_removes_finished_jobs_and_leaves_tombstones(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="rocksdb://"))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            done = [await submit(c, max_tokens=3) for _ in range(3)]
            for job in done:
                await until(state_probe(c, job), finished)
            slow = await submit(c, max_tokens=400, provider_options={"tokens_per_s": 40})
            await until(state_probe(c, slow), lambda s: s["status"] == "running")

            r = await c.post("/v1/admin/clean", params={"older_than": "0"}, headers=ALICE)
            assert r.status_code == 403
            r = await c.post("/v1/admin/clean", params={"older_than": "soon"}, headers=ADMIN)
            assert (r.status_code, r.json()["error"]["field"]) == (422, "older_than")
            r = await c.post("/v1/admin/clean", params={"older_than": "1h"}, headers=ADMIN)
            assert r.json() == {"removed": 0, "older_than_s": 3600.0}
            r = await c.post("/v1/admin/clean", params={"older_than": "0"}, headers=ADMIN)
            assert r.json()["removed"] == 3
            for job in done:
                assert (await c.get(f"/v1/jobs/{job}", headers=ALICE)).status_code == 404
            assert (await c.get(f"/v1/jobs/{slow}", headers=ALICE)).json()["status"] == "running"
            listed = await c.get("/v1/jobs", headers=ALICE)
            assert [j["job_id"] for j in listed.json()["jobs"]] == [slow]

        async with TopicReader(
            settings.kafka_bootstrap,
            settings.topics.job_state,
            settings.topic_partitions,
            lambda raw: raw,
        ) as public:
            keys = {j.encode() for j in done}
            await public.until(
                lambda _: keys <= {r.key for r, v in public.items if v is None},
                what="a tombstone for each cleaned job",
            )


async def test_an_accepted_job_the_aggregator_has_not_reached_reads_as_queued(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """An aggregator that lags (here: one that reads other topics) never turns a job into a 404."""
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    elsewhere = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "x"})
    with (
        aggregator_process(elsewhere, tmp_path),
        running(settings, ["ingest", "gateway"], ready_path="/healthz") as base,
    ):
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            job = await submit(c, max_tokens=3, priority="low")
            r = await c.get(f"/v1/jobs/{job}", headers=ALICE)
            assert r.status_code == 200, r.text
            state = r.json()
            assert (state["job_id"], state["status"], state["priority"]) == (job, "queued", "low")
            assert state["queued_at"] is not None and state["partition"] is not None
            assert (await c.get(f"/v1/jobs/{job}/result", headers=ALICE)).status_code == 409
            assert (await c.get(f"/v1/jobs/{job}", headers=BOB)).status_code == 404
            assert (
                await c.get("/v1/jobs/01a20000-0000-7000-8000-000000000000", headers=ALICE)
            ).status_code == 404
