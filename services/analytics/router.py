"""``/v1/analytics/*``: cost, throughput and latency from the rollups, and read-only SQL.

A user's answers cover their tenant only; an admin's cover every tenant.
``POST /v1/analytics/sql`` is for admins: it runs on a session that ClickHouse
itself holds read-only (``readonly=1``), with a row limit and a time limit the
query cannot lift, so no parsing on our side decides what may run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.analytics import queries
from services.analytics.clickhouse import ClickHouse, Rows
from services.analytics.queries import CostGroup, Interval, LatencyGroup
from services.core.auth import Principal
from services.core.errors import ApiError, ClickHouseError
from services.core.runtime import Runtime

DEFAULT_WINDOW = dt.timedelta(hours=1)
MAX_SQL_CHARS = 100_000


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)


class Engines:
    """The clients the router uses, set once the service has started."""

    reader: ClickHouse | None = None
    read_only: ClickHouse | None = None


def _tenant(who: Principal) -> str | None:
    return None if who.is_admin else who.tenant


def _engine(engine: ClickHouse | None) -> ClickHouse:
    if engine is None:
        raise ApiError(503, "unavailable", "analytics is starting; retry")
    return engine


async def _run(engine: ClickHouse | None, sql: str, params: dict[str, Any]) -> Rows:
    try:
        return await _engine(engine).query(sql, params)
    except ClickHouseError as exc:
        raise ApiError(503, "clickhouse_unavailable", f"analytics query failed: {exc}") from exc


def make_router(rt: Runtime, engines: Engines) -> APIRouter:
    router = APIRouter(prefix="/v1/analytics")

    async def principal(request: Request) -> Principal:
        return rt.access.principal(request)

    _add_rollup_routes(router, engines, Depends(principal))
    _add_sql_route(router, engines, Depends(principal))
    return router


def _add_rollup_routes(router: APIRouter, engines: Engines, who_dep: Any) -> None:
    @router.get("/cost")
    async def cost(
        group_by: CostGroup = CostGroup.MODEL,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        who: Principal = who_dep,
    ) -> dict[str, Any]:
        rows = await _run(engines.reader, *queries.cost(group_by, since, until, _tenant(who)))
        return {"rows": queries.jsonable(rows.dicts())}

    @router.get("/throughput")
    async def throughput(
        interval: Interval = Interval.MINUTE,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        who: Principal = who_dep,
    ) -> dict[str, Any]:
        end = until or dt.datetime.now(dt.UTC)
        start = since or end - DEFAULT_WINDOW
        if queries.utc(start) >= queries.utc(end):
            raise ApiError(422, "invalid_request", "since must be before until", "since")
        rows = await _run(engines.reader, *queries.throughput(interval, start, end, _tenant(who)))
        return {"rows": queries.jsonable(rows.dicts())}

    @router.get("/latency")
    async def latency(
        group_by: LatencyGroup = LatencyGroup.MODEL,
        since: dt.datetime | None = None,
        who: Principal = who_dep,
    ) -> dict[str, Any]:
        rows = await _run(engines.reader, *queries.latency(group_by, since, _tenant(who)))
        out = rows.dicts()
        for r in out:
            for column in ("ttft_ms", "itl_ms", "duration_ms"):
                r[column] = queries.percentiles(r[column])
        return {"rows": queries.jsonable(out)}


def _add_sql_route(router: APIRouter, engines: Engines, who_dep: Any) -> None:
    @router.post("/sql")
    async def sql(body: SqlRequest, who: Principal = who_dep) -> dict[str, Any]:
        if not who.is_admin:
            raise ApiError(403, "forbidden", "only an admin may run SQL")
        try:
            rows = await _engine(engines.read_only).query(body.sql)
        except ClickHouseError as exc:
            if exc.code is None:
                raise ApiError(503, "clickhouse_unavailable", str(exc)) from exc
            raise ApiError(400, "sql_refused", _first_line(exc), "sql") from exc
        return {"columns": rows.columns, "rows": [queries.jsonable(list(r)) for r in rows.rows]}


def _first_line(exc: ClickHouseError) -> str:
    """ClickHouse's own message, without the driver's prefix and the version trailer."""
    text = str(exc)
    start = text.find("DB::Exception:")
    text = text[start + len("DB::Exception:") :] if start >= 0 else text
    return text.split("(version")[0].strip().splitlines()[0][:1000]
