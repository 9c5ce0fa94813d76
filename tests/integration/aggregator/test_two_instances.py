"""Two aggregator instances share the partitions; either answers for any job, list or queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from tests.support.aggregators import aggregator_process, get_state, with_aggregator_port
from tests.support.jobs import submit
from tests.support.stack import running

pytestmark = pytest.mark.kafka


def owned(url: str) -> set[int]:
    r = httpx.post(f"{url}/local/queues", timeout=10)
    return set(r.json()["partitions"]) if r.status_code == 200 else set()


async def test_either_instance_answers_for_any_job(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    base_settings = make_settings(state_store="memory://", topic_partitions=4)
    a_settings = with_aggregator_port(base_settings)
    b_settings = with_aggregator_port(base_settings)
    with (
        aggregator_process(a_settings, tmp_path, "agg-a") as a,
        aggregator_process(b_settings, tmp_path, "agg-b") as b,
        running(a_settings, ["ingest", "gateway", "worker"]) as base,
    ):
        # Both are in the group once the partitions are split between them.
        give_up = asyncio.get_running_loop().time() + 60
        while not (owned(a.url) and owned(b.url) and owned(a.url) | owned(b.url) == set(range(4))):
            assert asyncio.get_running_loop().time() < give_up, "partitions never split"
            await asyncio.sleep(0.2)
        assert not owned(a.url) & owned(b.url)

        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            jobs = [await submit(c, max_tokens=4) for _ in range(24)]
        partitions: set[int] = set()
        for job in jobs:
            give_up = asyncio.get_running_loop().time() + 60
            while True:
                sa, sb = get_state(a.url, job), get_state(b.url, job)
                if sa and sb and sa["status"] == sb["status"] == "succeeded":
                    break
                assert asyncio.get_running_loop().time() < give_up, (sa, sb)
                await asyncio.sleep(0.1)
            assert sa == sb
            assert sa["job_id"] == job and sa["token_count"] == 4
            partitions.add(int(sa["partition"]))  # type: ignore[call-overload]
        assert len(partitions) > 1, "the jobs landed on partitions of both instances"

        lists = [
            httpx.get(f"{url}/jobs", params={"limit": 100}, timeout=10).json()
            for url in (a.url, b.url)
        ]
        assert lists[0] == lists[1]
        assert {j["job_id"] for j in lists[0]["jobs"]} == set(jobs)
        queues = [httpx.get(f"{url}/queues", timeout=10).json() for url in (a.url, b.url)]
        assert [q["queued"] + q["running"] for q in queues[0]["queues"]] == [0, 0, 0, 0]
