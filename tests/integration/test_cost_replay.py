"""Cost replay against a real stack: jobs of two tenants on two fake models priced by one
table, repriced under another through ``POST /v1/analytics/cost-replay`` and ``tokenrelay
cost replay``.

The reference is the tokens topic: each job's ``completed`` event gives its usage
and recorded cost, and the new prices are applied to it here by hand, in decimal.
The replay must add up to exactly that, by model and by tenant, and leave the
recorded costs as they were. The stack's row budget is a few rows, so a replay
reads several pages.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.core.settings import Settings
from tests.conftest import ADMIN, ALICE, BOB, fresh_settings
from tests.support.analytics import completed_events, decimal_json, run_sql
from tests.support.stack import running
from tests.support.topic_reader import events_reader

pytestmark = pytest.mark.kafka

RECORDED_PRICES = {
    "fake-alpha": {"input": 1.5, "output": 6.0},
    "fake-beta": {"input": 2.0, "output": 8.0},
}
NEW_PRICES = {
    "fake-": {"input": 0.3, "output": 1.2},
    "fake-beta": {"input": "4.1234567", "output": "9.87654321"},
}
NEW_BY_MODEL = {
    "fake-alpha": (Decimal("0.3"), Decimal("1.2")),  # by the prefix "fake-"
    "fake-beta-1": (Decimal("4.1234567"), Decimal("9.87654321")),  # "fake-beta", the longest
}
"""The new table's price of each model, resolved by hand."""
JOBS = [
    (headers, tenant, model, 1 + i)
    for headers, tenant in ((ALICE, "alice"), (BOB, "bob"))
    for model in NEW_BY_MODEL
    for i in range(2 if tenant == "alice" else 3)
]
"""(key, tenant, model, prompt words) of each job: 10 jobs, both models for both tenants."""
ROW_BUDGET = 3


@dataclass(frozen=True)
class Stack:
    base: str
    settings: Settings
    root: Path
    since: dt.datetime


def _new_cost(model: str, prompt: int, completion: int) -> Decimal:
    input_usd, output_usd = NEW_BY_MODEL[model]
    usd = (prompt * input_usd + completion * output_usd) / Decimal(1_000_000)
    return usd.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for the module, its jobs run and counted by analytics before any test."""
    root = tmp_path_factory.mktemp("replay")
    recorded = root / "prices.json"
    recorded.write_text(json.dumps({"models": RECORDED_PRICES}))
    settings = fresh_settings(
        kafka_bootstrap,
        chdb_url,
        root / "data",
        prices=recorded,
        analytics_max_rows=ROW_BUDGET,
        sink_flush_s=0.2,
    )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with (
        running(settings, ["ingest", "worker", "analytics"]) as base,
        httpx.Client(base_url=base, timeout=30) as c,
    ):
        for headers, _tenant, model, words in JOBS:
            job = {
                "prompt": " ".join(["replay"] * words),
                "model": model,
                "provider": "fake",
                "max_tokens": 3 + 5 * words,
                "provider_options": {"tokens_per_s": 0},
            }
            r = c.post("/v1/jobs", json=job, headers=headers)
            assert r.status_code == 202, r.text
        _counted(c, len(JOBS))
        yield Stack(base, settings, root, since)


def _counted(c: httpx.Client, jobs: int, timeout: float = 60.0) -> None:
    """Wait until the analytics count every job."""
    give_up = time.monotonic() + timeout
    while True:
        r = c.get("/v1/analytics/cost", params={"group_by": "tenant"}, headers=ADMIN)
        if r.status_code == 200 and sum(row["jobs"] for row in r.json()["rows"]) >= jobs:
            return
        assert time.monotonic() < give_up, f"analytics did not count {jobs} jobs: {r.text}"
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The module's stack outlives each test, and so do the threads it starts on demand."""
    yield


def _replay(c: httpx.Client, body: dict[str, Any], headers: dict[str, str] = ADMIN) -> Any:
    r = c.post("/v1/analytics/cost-replay", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return decimal_json(r)


async def test_a_replay_reprices_every_job_and_leaves_the_recorded_costs(stack: Stack) -> None:
    s = stack.settings
    async with events_reader(s.kafka_bootstrap, s.topics.tokens, s.topic_partitions) as log:
        events = await log.until(
            lambda ev: len(completed_events(ev)) >= len(JOBS), timeout=30, what="every job"
        )
    done = completed_events(events)
    assert len(done) == len(JOBS)
    model_of = {e.job_id: e.model for e in events if e.type == "queued"}

    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as ac:
        jobs_before = await run_sql(ac, "SELECT job_id, attempt, cost_usd FROM jobs ORDER BY 1")
    with httpx.Client(base_url=stack.base, timeout=30) as c:
        cost_before = {g: _cost_rows(c, g) for g in ("model", "tenant")}
        out = _replay(c, {"prices": {"models": NEW_PRICES}, "since": stack.since.isoformat()})
        cost_after = {g: _cost_rows(c, g) for g in ("model", "tenant")}
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as ac:
        jobs_after = await run_sql(ac, "SELECT job_id, attempt, cost_usd FROM jobs ORDER BY 1")
        stored = await run_sql(
            ac,
            "SELECT count(), sum(recorded_cost), sum(replayed_cost) FROM cost_replays "
            f"WHERE replay_id = '{out['replay_id']}'",
        )

    expected: dict[tuple[str, str], Decimal] = {}
    recorded: dict[tuple[str, str], Decimal] = {}
    for e in done:
        key = (model_of[e.job_id], e.tenant)
        cost = _new_cost(key[0], e.usage.prompt_tokens, e.usage.completion_tokens)
        expected[key] = expected.get(key, Decimal(0)) + cost
        recorded[key] = recorded.get(key, Decimal(0)) + Decimal(repr(e.cost_usd))
    replayed_total, recorded_total = sum(expected.values()), sum(recorded.values())
    assert recorded_total > 0 and replayed_total > 0, "both tables price both models"
    assert replayed_total != recorded_total

    assert out["jobs"] == len(JOBS) and out["unpriced_models"] == []
    assert out["replayed_usd"] == replayed_total
    assert out["recorded_usd"] == recorded_total
    assert out["difference_usd"] == replayed_total - recorded_total
    for group, index in (("model", 0), ("tenant", 1)):
        rows = {r[group]: r for r in out[f"by_{group}"]}
        assert set(rows) == {k[index] for k in expected}, group
        assert sum(r["jobs"] for r in rows.values()) == len(JOBS)
        assert sum(r["replayed_usd"] for r in rows.values()) == replayed_total, group
        assert sum(r["recorded_usd"] for r in rows.values()) == recorded_total, group
        for name, r in rows.items():
            assert r["replayed_usd"] == sum(v for k, v in expected.items() if k[index] == name)
            assert r["recorded_usd"] == sum(v for k, v in recorded.items() if k[index] == name)
            assert r["difference_usd"] == r["replayed_usd"] - r["recorded_usd"]

    assert stored == [[len(JOBS), recorded_total, replayed_total]], "one row per job, kept"
    assert jobs_after == jobs_before, "the recorded costs are untouched"
    assert cost_after == cost_before
    assert sum(r["cost_usd"] for r in cost_after["model"]) == recorded_total


def _cost_rows(c: httpx.Client, group: str) -> list[dict[str, Any]]:
    r = c.get("/v1/analytics/cost", params={"group_by": group}, headers=ADMIN)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = decimal_json(r)["rows"]
    return rows


def test_a_window_takes_jobs_in_and_out(stack: Stack) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with httpx.Client(base_url=stack.base, timeout=30) as c:
        none = _replay(c, {"prices": {"models": NEW_PRICES}, "since": later.isoformat()})
        every = _replay(c, {"prices": {"models": NEW_PRICES}, "until": later.isoformat()})
        r = c.post(
            "/v1/analytics/cost-replay",
            json={
                "prices": {"models": NEW_PRICES},
                "since": later.isoformat(),
                "until": "2026-01-01",
            },
            headers=ADMIN,
        )
    assert none["jobs"] == 0 and none["by_model"] == [] and none["replayed_usd"] == 0
    assert every["jobs"] == len(JOBS)
    assert r.status_code == 422 and r.json()["error"]["field"] == "since"


def test_only_an_admin_may_replay(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base, timeout=30) as c:
        r = c.post(
            "/v1/analytics/cost-replay", json={"prices": {"models": NEW_PRICES}}, headers=ALICE
        )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("prices", "field"),
    [
        ({"models": {"fake-": {"input": "cheap", "output": 1}}}, "prices.models.fake-.input"),
        ({"models": {"fake-": {"input": -1, "output": 1}}}, "prices.models.fake-.input"),
        ({"models": {"fake-": {"input": 1}}}, "prices.models.fake-.output"),
        ({"models": {}}, "prices.models"),
        ({"model": NEW_PRICES}, "prices.models"),
        ({"models": {"fake-": {"input": 1, "output": 3e7}}}, "prices.models.fake-.output"),
    ],
)
def test_a_malformed_price_table_is_a_422_naming_the_field(
    stack: Stack, prices: dict[str, Any], field: str
) -> None:
    with httpx.Client(base_url=stack.base, timeout=30) as c:
        r = c.post("/v1/analytics/cost-replay", json={"prices": prices}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_the_command_prints_the_replay(stack: Stack) -> None:
    new = stack.root / "new-prices.json"
    new.write_text(json.dumps({"schema": "tokenrelay.Prices/1", "models": NEW_PRICES}))
    runner = CliRunner()
    env = {"TOKENRELAY_URL": stack.base, "TOKENRELAY_API_KEY": "key-admin"}
    as_json = runner.invoke(app, ["cost", "replay", "--prices", str(new), "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    out = orjson.loads(as_json.stdout)
    assert out["jobs"] == len(JOBS) and {r["model"] for r in out["by_model"]} == set(NEW_BY_MODEL)

    shown = runner.invoke(app, ["cost", "replay", "--prices", str(new)], env=env)
    assert shown.exit_code == 0, shown.output
    assert "by model" in shown.stdout and "by tenant" in shown.stdout
    assert f"{len(JOBS)} jobs" in shown.stdout

    user = {**env, "TOKENRELAY_API_KEY": "key-alice"}
    refused = runner.invoke(app, ["cost", "replay", "--prices", str(new)], env=user)
    assert refused.exit_code == 1 and "403" in refused.stderr
