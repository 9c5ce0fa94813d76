"""500 jobs of two tenants through ingest, a worker and analytics: the rollups add up exactly.

The reference is the tokens topic itself: every job's ``completed`` event, read
``read_committed``. The cost rollup, grouped any way, must add up to exactly its
sums (jobs, prompt and completion tokens, dollars to the nano-dollar), a user
must see only their tenant, and the throughput rollup must count the same jobs
and tokens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from schemas.events import Completed
from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.analytics import (
    analytics_caught_up,
    completed_events,
    get_rows,
    totals_from_completed,
    totals_of_rows,
    write_prices,
)
from tests.support.stack import running
from tests.support.topic_reader import events_reader

pytestmark = pytest.mark.kafka

JOBS_PER_TENANT = 250
PRIORITIES = ("urgent", "high", "normal", "low")


def _jobs(tenant: str) -> list[dict[str, object]]:
    """Varied prompts (1-9 words), lengths (1-48 tokens) and priorities, unpaced."""
    return [
        {
            "prompt": " ".join([f"{tenant}{i}"] * (1 + i % 9)),
            "max_tokens": 1 + (i * 37) % 48,
            "priority": PRIORITIES[i % len(PRIORITIES)],
            "provider_options": {"tokens_per_s": 0},
        }
        for i in range(JOBS_PER_TENANT)
    ]


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], tenant: str) -> list[str]:
    r = await client.post("/v1/batches", json={"jobs": _jobs(tenant)}, headers=headers)
    assert r.status_code == 202, r.text
    job_ids: list[str] = r.json()["job_ids"]
    return job_ids


async def test_rollups_add_up_to_the_completed_events(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(prices=write_prices(tmp_path), worker_concurrency=64, sink_flush_s=0.2)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with running(settings, ["ingest", "worker", "analytics"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as c,
            events_reader(
                settings.kafka_bootstrap, settings.topics.tokens, settings.topic_partitions
            ) as log,
        ):
            ids = {"alice": await _submit(c, ALICE, "alice"), "bob": await _submit(c, BOB, "bob")}
            events = await log.until(
                lambda ev: sum(isinstance(e, Completed) for e in ev) >= 2 * JOBS_PER_TENANT,
                timeout=90,
                what="every job completed",
            )
            await analytics_caught_up(c, 2 * JOBS_PER_TENANT)
            until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
            window = {"since": since.isoformat(), "until": until.isoformat()}
            by = {
                g: await get_rows(c, "cost", group_by=g, **window)
                for g in ("model", "tenant", "priority", "day")
            }
            alice_by = {
                g: await get_rows(c, "cost", ALICE, group_by=g)
                for g in ("model", "tenant", "priority")
            }
            flow = await get_rows(c, "throughput", interval="minute", **window)
            alice_flow = await get_rows(c, "throughput", ALICE, interval="minute", **window)
            hourly = await get_rows(c, "throughput", interval="hour", **window)
            later = (until + dt.timedelta(hours=2)).isoformat()
            none_since_later = await get_rows(c, "cost", group_by="model", since=later)

    done = completed_events(events)
    assert {e.job_id for e in done} == set(ids["alice"]) | set(ids["bob"])
    total = totals_from_completed(done)
    tenant_total = {t: totals_from_completed(e for e in done if e.tenant == t) for t in ids}
    assert total.jobs == 2 * JOBS_PER_TENANT
    assert total.cost_usd > 0, "the fake model is priced"

    for group, rows in by.items():
        assert totals_of_rows(rows) == total, f"cost by {group}"
        assert all(r["succeeded"] == r["jobs"] for r in rows), group
    assert by["model"][0]["model"] == "fake-1"
    assert none_since_later == [], "since takes jobs out of the answer"
    assert {r["tenant"]: totals_of_rows([r]) for r in by["tenant"]} == tenant_total
    for p in PRIORITIES:
        expected = totals_from_completed(e for e in done if e.job_id in _ids_of_priority(ids, p))
        (row,) = [r for r in by["priority"] if r["priority"] == p]
        assert totals_of_rows([row]) == expected, f"priority {p}"

    assert [r["tenant"] for r in alice_by["tenant"]] == ["alice"], "a user sees only her tenant"
    for group, rows in alice_by.items():
        assert totals_of_rows(rows) == tenant_total["alice"], f"alice's cost by {group}"

    tokens = sum(e.tokens or 0 for e in done)
    assert tokens == total.completion_tokens
    alice = tenant_total["alice"]
    for name, rows, expected_jobs, expected_tokens in (
        ("by minute", flow, total.jobs, tokens),
        ("by hour", hourly, total.jobs, tokens),
        ("alice's", alice_flow, alice.jobs, alice.completion_tokens),
    ):
        assert sum(r["jobs"] for r in rows) == expected_jobs, f"throughput {name}"
        assert sum(r["tokens"] for r in rows) == expected_tokens, f"throughput {name}"
    minutes = [dt.datetime.fromisoformat(r["t"]) for r in flow]
    assert minutes == [minutes[0] + dt.timedelta(minutes=i) for i in range(len(minutes))], (
        "one row per minute of the window, empty minutes included"
    )
    for r in flow:
        assert abs(r["jobs_per_s"] - Decimal(r["jobs"]) / 60) < Decimal("1e-9"), r
        assert abs(r["tokens_per_s"] - Decimal(r["tokens"]) / 60) < Decimal("1e-9"), r


def _ids_of_priority(ids: dict[str, list[str]], priority: str) -> set[str]:
    """Jobs submitted with ``priority``: the batch answers ids in input order."""
    k = PRIORITIES.index(priority)
    return {j for jobs in ids.values() for i, j in enumerate(jobs) if i % len(PRIORITIES) == k}
