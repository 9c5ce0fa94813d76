"""``POST /v1/analytics/sql``: reads answer ``{"columns", "rows"}``; ClickHouse itself refuses
every write, every attempt to lift read-only, too many rows and too long a query."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ADMIN, ALICE, API_KEYS
from tests.support.analytics import analytics_caught_up, run_sql
from tests.support.stack import running

pytestmark = pytest.mark.kafka

MAX_ROWS = 5
TIMEOUT_S = 1.0
JOBS = 3


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One stack for the file, its ``jobs`` table holding a few finished jobs: its URL."""
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"s{run}",
        worker_group=f"w{run}",
        analytics_group=f"a{run}",
        clickhouse_url=chdb_url,
        clickhouse_database=f"s{run}",
        api_keys=API_KEYS,  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("data"),
        fake_tokens_per_s=400.0,
        sink_flush_s=0.1,
        sql_max_rows=MAX_ROWS,
        sql_timeout_s=TIMEOUT_S,
    )
    with running(settings, ["ingest", "worker", "analytics"]) as base:
        asyncio.run(_finished_jobs(base))
        yield base


async def _finished_jobs(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for i in range(JOBS):
            r = await c.post("/v1/jobs", json={"prompt": f"p{i}", "max_tokens": 3}, headers=ALICE)
            assert r.status_code == 202, r.text
        await analytics_caught_up(c, JOBS)


@pytest.fixture
async def client(stack: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as c:
        yield c


async def post_sql(c: httpx.AsyncClient, body: Any, headers: dict[str, str] = ADMIN) -> Any:
    return await c.post("/v1/analytics/sql", json=body, headers=headers)


def refused(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_select_answers_columns_and_rows(client: httpx.AsyncClient) -> None:
    r = await post_sql(
        client,
        {
            "sql": "SELECT tenant, count() AS jobs, sum(completion_tokens) AS tokens "
            "FROM jobs GROUP BY tenant"
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "columns": ["tenant", "jobs", "tokens"],
        "rows": [["alice", JOBS, 3 * JOBS]],
    }

    at_the_limit = await post_sql(client, {"sql": f"SELECT number FROM numbers({MAX_ROWS})"})
    assert at_the_limit.json()["rows"] == [[n] for n in range(MAX_ROWS)]


WRITES = [
    "DROP TABLE jobs",
    "DROP DATABASE IF EXISTS system",
    "TRUNCATE TABLE jobs",
    "CREATE TABLE intruder (a UInt8) ENGINE = Memory",
    "INSERT INTO jobs (job_id, tenant) VALUES ('forged', 'alice')",
    "ALTER TABLE jobs DELETE WHERE 1",
    "ALTER TABLE jobs ADD COLUMN intruder UInt8",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SET max_result_rows = 0",
    f"SELECT number FROM numbers({MAX_ROWS * 20}) SETTINGS max_result_rows = 0",
]


async def test_writes_and_setting_changes_are_refused(client: httpx.AsyncClient) -> None:
    tables = (  # one row: the endpoint answers at most MAX_ROWS
        "SELECT arraySort(groupArray(name)) FROM system.tables WHERE database = currentDatabase()"
    )
    before = await run_sql(client, tables), await run_sql(client, "SHOW CREATE TABLE jobs")
    content = await run_sql(client, "SELECT job_id, tokens FROM jobs ORDER BY job_id")
    assert len(content) == JOBS

    for sql in WRITES:
        error = refused(await post_sql(client, {"sql": sql}))
        assert (error["code"], error["field"]) == ("sql_refused", "sql"), sql
        assert error["message"], sql

    after = await run_sql(client, tables), await run_sql(client, "SHOW CREATE TABLE jobs")
    assert after == before
    assert await run_sql(client, "SELECT job_id, tokens FROM jobs ORDER BY job_id") == content


async def test_a_refused_multi_statement_query_leaves_nothing_behind(
    make_settings: Callable[..., Settings],
) -> None:
    """On chDB a refused multi-statement query once left its first statement's rows on the
    session, answered by the next query (or a 500 when the types differed).

    On a stack of its own: what it might leave behind must not reach the other tests.
    """
    settings = make_settings(sql_max_rows=MAX_ROWS, sql_timeout_s=TIMEOUT_S, sink_flush_s=0.1)
    with running(settings, ["ingest", "worker", "analytics"]) as base:
        await _finished_jobs(base)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await _multi_statements(client)


async def _multi_statements(client: httpx.AsyncClient) -> None:
    refused(await post_sql(client, {"sql": "SELECT 5 AS x; DROP TABLE jobs"}))
    assert (await run_sql(client, "SELECT 6 AS x")) == [[6]]
    refused(await post_sql(client, {"sql": "SELECT 'a' AS x; SELECT throwIf(1)"}))
    assert (await run_sql(client, "SELECT 7 AS x")) == [[7]]
    assert (await run_sql(client, "SELECT count() FROM jobs")) == [[JOBS]]


async def test_too_many_rows_is_refused(client: httpx.AsyncClient) -> None:
    error = refused(await post_sql(client, {"sql": "SELECT number FROM numbers(100)"}))
    assert error["field"] == "sql"
    assert "TOO_MANY_ROWS" in error["message"]


@pytest.mark.parametrize(
    "sql",
    ["SELECT sleep(3)", "SELECT count() FROM numbers(1000000000000) WHERE number % 7 = 3"],
    ids=["sleep", "scan"],
)
async def test_a_query_past_the_time_limit_is_stopped_at_it(
    client: httpx.AsyncClient, sql: str
) -> None:
    t0 = time.monotonic()
    error = refused(await post_sql(client, {"sql": sql}))
    took = time.monotonic() - t0
    assert error["field"] == "sql"
    assert "TIMEOUT_EXCEEDED" in error["message"]
    assert TIMEOUT_S <= took < TIMEOUT_S + 1.0, f"answered after {took:.2f}s"
    assert (await post_sql(client, {"sql": "SELECT 1"})).status_code == 200, "still serving"


async def test_only_an_admin_may_run_sql(client: httpx.AsyncClient) -> None:
    body = {"sql": "SELECT count() FROM jobs"}
    assert refused(await post_sql(client, body, ALICE), 403)["code"] == "forbidden"
    assert refused(await post_sql(client, body, {}), 401)["code"] == "unauthenticated"
    wrong = {"Authorization": "Bearer not-a-key"}
    assert refused(await post_sql(client, body, wrong), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "sql"),
        ({"sql": ""}, "sql"),
        ({"sql": 1}, "sql"),
        ({"sql": None}, "sql"),
        ({"sql": "x" * 100_001}, "sql"),
        ({"sql": "SELECT 1", "database": "system"}, "database"),
    ],
    ids=["missing", "empty", "number", "null", "too-long", "extra-field"],
)
async def test_bad_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    error = refused(await post_sql(client, body), 422)
    assert error["field"] == field, error


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/analytics/sql",
        content=b"SELECT 1",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    error = refused(r, 400)
    assert (error["code"], error["field"]) == ("invalid_json", "body")
