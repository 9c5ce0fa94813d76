"""Tenants at run time, against a real broker and chDB: keys made and revoked on one process
and honoured or refused by another within seconds; policies every process reads; a budget
that stops a running job at its cap and then refuses submissions with 402; jobs per minute
refused with 429; and a tenant's usage, readable by that tenant and admins only.

Two processes share the topics: A (ingest, gateway, worker, analytics) and B (ingest,
gateway), each following ``tokenrelay.tenants``, ``.keys`` and ``.spend`` on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from tests.conftest import ADMIN, ALICE, fresh_settings
from tests.support.sse import read_events
from tests.support.stack import running

pytestmark = pytest.mark.kafka

MODEL = "fake-priced"
PER_TOKEN = Decimal("0.001")
"""$1,000 per million tokens, in and out: a token costs a tenth of a cent."""
PRICES = {"models": {MODEL: {"input": "1000", "output": "1000"}}}


@dataclass
class Stack:
    a: httpx.Client
    b: httpx.Client


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("tenants")
    prices = root / "prices.json"
    prices.write_text(json.dumps(PRICES))
    settings = fresh_settings(kafka_bootstrap, chdb_url, root / "a", prices=prices)
    other = settings.model_copy(update={"worker_id": f"{settings.worker_id}-b", "data_dir": root})
    with (
        running(settings, ["ingest", "gateway", "worker", "analytics"]) as base_a,
        running(other, ["ingest", "gateway"]) as base_b,
        httpx.Client(base_url=base_a, timeout=30) as a,
        httpx.Client(base_url=base_b, timeout=30) as b,
    ):
        yield Stack(a, b)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The module's stacks outlive each test, and so do their threads."""
    yield


def until(
    read: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool], within: float = 15
) -> tuple[httpx.Response, float]:
    """Poll ``read`` until ``done``; the answer and the seconds it took."""
    t0 = time.monotonic()
    while not done(last := read()):
        assert time.monotonic() - t0 < within, last.text
        time.sleep(0.05)
    return last, time.monotonic() - t0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(client: httpx.Client, tenant: str, role: str = "user") -> dict[str, Any]:
    r = client.post("/v1/admin/keys", json={"tenant": tenant, "role": role}, headers=ADMIN)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def test_a_made_key_works_on_every_process_and_a_revoked_one_stops_within_seconds(
    stack: Stack,
) -> None:
    made = make_key(stack.a, "carol")
    key = made["key"]
    # the answer comes once this process has read the key back: it works here at once
    assert stack.a.get("/v1/me", headers=bearer(key)).json() == {"tenant": "carol", "role": "user"}
    _, took = until(lambda: stack.b.get("/v1/me", headers=bearer(key)), lambda r: r.is_success)
    assert took < 5
    listed = stack.b.get("/v1/admin/keys", headers=ADMIN).json()["keys"]
    (mine,) = [k for k in listed if k["id"] == made["id"]]
    assert mine["tenant"] == "carol" and "key" not in mine and key not in json.dumps(listed)

    assert stack.b.delete(f"/v1/admin/keys/{made['id']}", headers=ADMIN).status_code == 204
    assert stack.b.get("/v1/me", headers=bearer(key)).status_code == 401
    _, took = until(
        lambda: stack.a.get("/v1/me", headers=bearer(key)), lambda r: r.status_code == 401
    )
    assert took < 5
    assert stack.a.delete(f"/v1/admin/keys/{made['id']}", headers=ADMIN).status_code == 404


def test_only_admins_manage_tenants_and_keys(stack: Stack) -> None:
    assert stack.a.get("/v1/admin/keys", headers=ALICE).status_code == 403
    assert stack.a.post("/v1/admin/keys", json={"tenant": "x"}, headers=ALICE).status_code == 403
    assert stack.a.put("/v1/admin/tenants/x", json={}, headers=ALICE).status_code == 403
    made_by_user_key = make_key(stack.a, "mallory")
    mallory = bearer(made_by_user_key["key"])
    assert stack.a.get("/v1/admin/tenants", headers=mallory).status_code == 403


def test_a_bad_policy_is_a_422_naming_the_field(stack: Stack) -> None:
    r = stack.a.put("/v1/admin/tenants/erin", json={"weight": -1}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "weight"
    r = stack.a.put("/v1/admin/tenants/erin", json={"rpm": 5, "burst": 1}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "burst"
    r = stack.a.put("/v1/admin/tenants/no%20spaces", json={}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "tenant"


def test_a_policy_set_on_one_process_holds_on_the_other(stack: Stack) -> None:
    r = stack.a.put(
        "/v1/admin/tenants/frank", json={"weight": 3, "max_concurrency": 2}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert r.json()["weight"] == 3 and r.json()["by"] == "ops"

    def listed(resp: httpx.Response) -> bool:
        return any(
            t["tenant"] == "frank" and t["max_concurrency"] == 2 for t in resp.json()["tenants"]
        )

    until(lambda: stack.b.get("/v1/admin/tenants", headers=ADMIN), listed)


def test_jobs_per_minute_beyond_the_tenants_rpm_are_refused_with_429(stack: Stack) -> None:
    key = bearer(make_key(stack.a, "gina")["key"])
    assert stack.a.put("/v1/admin/tenants/gina", json={"rpm": 2}, headers=ADMIN).is_success
    job = {"prompt": "p", "max_tokens": 2}
    assert [stack.a.post("/v1/jobs", json=job, headers=key).status_code for _ in range(2)] == [
        202,
        202,
    ]
    refused = stack.a.post("/v1/jobs", json=job, headers=key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    batch = stack.a.post("/v1/batches", json={"jobs": [job]}, headers=key)
    assert batch.status_code == 429


def test_a_keys_own_jobs_per_minute_hold_within_its_tenants(stack: Stack) -> None:
    made = stack.a.post("/v1/admin/keys", json={"tenant": "hugo", "rpm": 1}, headers=ADMIN).json()
    assert made["rpm"] == 1
    other = bearer(make_key(stack.a, "hugo")["key"])  # the same tenant, no key limit
    job = {"prompt": "p", "max_tokens": 2}
    assert stack.a.post("/v1/jobs", json=job, headers=bearer(made["key"])).status_code == 202
    refused = stack.a.post("/v1/jobs", json=job, headers=bearer(made["key"]))
    assert refused.status_code == 429 and "this key" in refused.json()["error"]["message"]
    assert stack.a.post("/v1/jobs", json=job, headers=other).status_code == 202


def test_a_budget_stops_a_running_job_at_its_cap_then_refuses_with_402(stack: Stack) -> None:
    budget = Decimal("0.05")
    key = bearer(make_key(stack.a, "dave")["key"])
    r = stack.a.put(
        "/v1/admin/tenants/dave", json={"budget_usd_per_day": float(budget)}, headers=ADMIN
    )
    assert r.is_success
    job = {
        "prompt": "p",
        "model": MODEL,
        "provider": "fake",
        "max_tokens": 2000,
        "provider_options": {"tokens_per_s": 500},
    }
    accepted = stack.a.post("/v1/jobs", json=job, headers=key)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    events = read_events(stack.a, f"/v1/jobs/{job_id}/events", headers=key)
    end = events[-1]
    assert end.event == "failed" and end.data["error_kind"] == "budget", end.data
    tokens = [e for e in events if e.event == "token"]
    cost = Decimal(repr(end.data["cost_usd"]))
    # stopped at the cap: within the budget, and one more token would have passed it
    assert cost <= budget < cost + PER_TOKEN
    usage = end.data["usage"]
    assert usage["completion_tokens"] == len(tokens) == end.data["tokens"] < 2000
    assert cost == (usage["prompt_tokens"] + usage["completion_tokens"]) * PER_TOKEN

    # a job right after it, before its cost reached the spend figure: the worker still counts
    # what ended there, so the second spends nothing (or ingest already refuses it)
    second = stack.a.post("/v1/jobs", json=job, headers=key)
    if second.status_code == 202:
        path = f"/v1/jobs/{second.json()['job_id']}/events"
        end2 = read_events(stack.a, path, headers=key)[-1]
        assert end2.event == "failed" and end2.data["error_kind"] == "budget", end2.data
        assert end2.data["cost_usd"] == 0 and end2.data["tokens"] == 0
    else:
        assert second.status_code == 402, second.text

    # once the spend reached ClickHouse and every process, the next job is refused
    spent, _ = until(
        lambda: stack.b.get("/v1/tenants/dave/usage", headers=key),
        lambda r: r.json()["spent"]["usd_day"] > 0,
        within=30,
    )
    body = spent.json()
    assert Decimal(repr(body["spent"]["usd_day"])) == cost
    assert body["limits"]["budget_usd_per_day"] == float(budget)
    assert body["remaining"]["usd_day"] == pytest.approx(float(budget - cost))
    refused = stack.b.post("/v1/jobs", json=job, headers=key)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and str(budget) in error["message"]
    assert body["day_resets_at"] in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1

    # another tenant cannot read it; an admin can
    assert stack.a.get("/v1/tenants/dave/usage", headers=ALICE).status_code == 403
    assert stack.a.get("/v1/tenants/dave/usage", headers=ADMIN).json()["tenant"] == "dave"


def test_the_cli_makes_a_key_sets_a_policy_and_shows_usage(stack: Stack) -> None:
    cli = CliRunner()
    base = ["--url", str(stack.a.base_url)]
    admin = [*base, "--api-key", "key-admin"]
    made = cli.invoke(app, ["keys", "create", "--tenant", "ivan", *admin])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("trk_")
    set_ = cli.invoke(app, ["tenants", "set", "ivan", "--tokens-per-day", "500", *admin])
    assert set_.exit_code == 0, set_.output
    shown = cli.invoke(app, ["tenants", "usage", "--json", *base, "--api-key", key])
    assert shown.exit_code == 0, shown.output
    usage = json.loads(shown.stdout)
    assert usage["tenant"] == "ivan" and usage["limits"]["tokens_per_day"] == 500
    table = cli.invoke(app, ["tenants", "usage", *base, "--api-key", key])
    assert "tokens today" in table.stdout and "500" in table.stdout
    listed = cli.invoke(app, ["keys", "list", "--json", *admin])
    assert key not in listed.stdout and '"tenant": "ivan"' in listed.stdout
    refused = cli.invoke(app, ["keys", "list", *base, "--api-key", key])
    assert refused.exit_code == 1 and "403" in refused.output
