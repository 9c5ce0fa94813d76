"""Every analytics question has a bounded cost: its window is checked before it runs, ClickHouse
holds it to a row and time budget, and each key may ask only so many a minute.

What once took the public face down — throughput per minute since 1900, from a
user key — is now a 422 naming ``since``, and the process answers the next
question at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE, API_KEYS, BOB
from tests.support.stack import running

pytestmark = pytest.mark.kafka

MAX_ROWS = 100
RATE_PER_MIN = 40


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"c{run}",
        worker_group=f"w{run}",
        analytics_group=f"a{run}",
        clickhouse_url=chdb_url,
        clickhouse_database=f"c{run}",
        api_keys=API_KEYS,  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("data"),
        analytics_max_rows=MAX_ROWS,
        analytics_rate_per_min=RATE_PER_MIN,
    )
    with running(settings, ["ingest", "worker", "analytics"]) as base:
        yield base


@pytest.fixture
async def client(stack: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as c:
        yield c


def error_of(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, (r.status_code, r.text)
    err: dict[str, str] = r.json()["error"]
    return err


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("throughput", {"since": "1900-01-01T00:00:00Z", "interval": "minute"}, "since"),
        ("throughput", {"since": "2026-01-01T00:00:00Z", "interval": "minute"}, "since"),
        ("throughput", {"since": "2020-01-01", "interval": "hour"}, "since"),
        ("throughput", {"since": "2026-02-01", "until": "2026-01-01"}, "since"),
        ("throughput", {"until": "0.5"}, "until"),
        ("cost", {"since": "0999-01-01T00:00:00Z"}, "since"),
        ("cost", {"since": "0.5"}, "since"),
        ("cost", {"since": "1700000000"}, "since"),
        ("latency", {"since": "2300-01-01"}, "since"),
        ("latency", {"since": "yesterday"}, "since"),
    ],
)
async def test_a_window_out_of_bounds_is_422_naming_the_field(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    r = await client.get(f"/v1/analytics/{path}", params=params, headers=ALICE)
    err = error_of(r, 422)
    assert err["field"] == field, err
    ok = await client.get("/v1/analytics/cost", headers=BOB)
    assert ok.status_code == 200, "the process answers the next question"


async def test_the_widest_windows_allowed_answer(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/v1/analytics/throughput",
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T01:00:00Z"},
        headers=BOB,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["rows"]) == 60, "one row per minute, empty ones as zeros"


async def test_an_answer_over_the_row_budget_is_422(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/v1/analytics/throughput",
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T03:00:00Z"},
        headers=BOB,
    )
    err = error_of(r, 422)
    assert (err["code"], err["field"]) == ("too_expensive", "since")


async def test_a_key_past_its_rate_gets_429_with_retry_after(stack: str) -> None:
    headers = {"X-API-Key": "key-admin"}
    async with httpx.AsyncClient(base_url=stack, timeout=30) as c:
        answered = 0
        while (r := await c.get("/v1/analytics/cost", headers=headers)).status_code == 200:
            answered += 1
            assert answered <= RATE_PER_MIN + 5, "the key was never limited"
        other = await c.get("/v1/analytics/cost", headers=ALICE)
    assert answered >= RATE_PER_MIN, "a full minute's budget was answered first"
    err = error_of(r, 429)
    assert err["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert other.status_code == 200, "another key has its own budget"
