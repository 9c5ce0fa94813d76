"""A batch of 100 through the public API: progress, pause, resume, cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.aggregators import (
    stack_with_aggregator,
    with_aggregator_port,
)
from tests.support.jobs import submit
from tests.support.polling import finished, state_probe, until

pytestmark = pytest.mark.kafka

N = 100


def batch_probe(c: httpx.AsyncClient, batch_id: str):  # type: ignore[no-untyped-def]
    async def probe() -> dict[str, Any]:
        r = await c.get(f"/v1/batches/{batch_id}", headers=ALICE)
        return r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}

    return probe


def counts(b: dict[str, Any]) -> dict[str, int]:
    return b.get("counts", {})


async def run_others(c: httpx.AsyncClient) -> None:
    others = [await submit(c, max_tokens=5) for _ in range(3)]
    for job in others:
        await until(state_probe(c, job), finished)


async def new_batch(c: httpx.AsyncClient, tokens_per_s: float) -> str:
    jobs = [
        {"prompt": f"job {i}", "max_tokens": 20, "provider_options": {"tokens_per_s": tokens_per_s}}
        for i in range(N)
    ]
    r = await c.post("/v1/batches", json={"jobs": jobs}, headers=ALICE)
    assert r.status_code == 202, r.text
    assert len(r.json()["job_ids"]) == N
    batch_id: str = r.json()["batch_id"]
    return batch_id


async def test_a_batch_runs_to_100_percent_through_pause_and_resume(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://", worker_concurrency=4))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            batch = await new_batch(c, tokens_per_s=200)
            probe = batch_probe(c, batch)
            first = await until(probe, lambda b: counts(b).get("succeeded", 0) >= 10)
            assert first["total"] == N
            assert 0 < first["progress_pct"] < 100
            assert first["eta_s"] is not None and first["eta_s"] > 0
            assert (await c.get(f"/v1/batches/{batch}", headers=BOB)).status_code == 404

            r = await c.post(f"/v1/batches/{batch}/pause", headers=ALICE)
            assert r.status_code == 202, r.text
            await until(probe, lambda b: b["status"] == "paused")
            # One round of other jobs: by its end every worker has read the pause,
            # and what was running when it arrived has ended.
            await run_others(c)
            paused = await until(probe, lambda b: counts(b)["running"] == 0)
            assert counts(paused)["queued"] > 0, "the pause came before the batch ended"
            # Workers are free and run other jobs, yet none of the batch starts.
            await run_others(c)
            still = await probe()
            assert counts(still) == counts(paused)
            assert still["status"] == "paused"

            r = await c.post(f"/v1/batches/{batch}/resume", headers=ALICE)
            assert r.status_code == 202, r.text
            done = await until(probe, lambda b: b["progress_pct"] == 100.0, timeout=90)
            assert counts(done) == {
                "queued": 0,
                "running": 0,
                "succeeded": N,
                "failed": 0,
                "cancelled": 0,
            }
            assert (done["status"], done["total"], done["eta_s"]) == ("succeeded", N, 0.0)
            assert done["finished_at"] is not None
            listed = await c.get(
                "/v1/jobs", params={"batch_id": batch, "limit": 500}, headers=ALICE
            )
            assert len(listed.json()["jobs"]) == N


async def test_cancelling_a_batch_ends_every_unfinished_job(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(state_store="memory://", worker_concurrency=4))
    with stack_with_aggregator(settings, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            batch = await new_batch(c, tokens_per_s=100)
            probe = batch_probe(c, batch)
            before = await until(probe, lambda b: counts(b).get("succeeded", 0) >= 5)
            assert (await c.post(f"/v1/batches/{batch}/cancel", headers=BOB)).status_code == 404
            r = await c.post(
                f"/v1/batches/{batch}/cancel", json={"reason": "enough"}, headers=ALICE
            )
            assert r.status_code == 202, r.text
            done = await until(probe, lambda b: b["progress_pct"] == 100.0, timeout=90)
            got = counts(done)
            assert got["succeeded"] + got["cancelled"] == N and got["failed"] == 0
            assert got["succeeded"] >= counts(before)["succeeded"]
            assert got["cancelled"] > 0
            assert done["status"] == "cancelled"
            listed = await c.get(
                "/v1/jobs", params={"batch_id": batch, "limit": 500}, headers=ALICE
            )
            states = [j["status"] for j in listed.json()["jobs"]]
            assert states.count("cancelled") == got["cancelled"]
            assert states.count("succeeded") == got["succeeded"]
