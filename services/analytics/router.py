"""``/v1/analytics/*``: cost, throughput and latency from the rollups, and read-only SQL.

A user's answers cover their tenant only; an admin's cover every tenant. Every
question has a cost bound: its window is checked (``window``) before it runs,
ClickHouse enforces a row and time budget on the session, and each API key may
ask ``TOKENRELAY_ANALYTICS_RATE_PER_MIN`` questions a minute (then 429 with
``Retry-After``). A question over its budget is a 422 that says to narrow it.
``POST /v1/analytics/sql`` is for admins: it runs on a session that ClickHouse
itself holds read-only (``readonly=1``), with a row limit and a time limit the
query cannot lift, so no parsing on our side decides what may run.
``POST /v1/analytics/cost-replay`` is for admins too (``cost_replay``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from schemas.api import CostReplay, CostRows, LatencyRows, SqlAnswer, ThroughputRows
from services.analytics import cost_replay, queries
from services.analytics.clickhouse import ClickHouse, Rows
from services.analytics.queries import CostGroup, Interval, LatencyGroup
from services.analytics.window import Instant, too_wide
from services.core.auth import Principal
from services.core.errors import ApiError, ClickHouseError
from services.core.http import JsonResponse, StrictJsonRoute
from services.core.openapi import error_responses
from services.core.prices import Prices
from services.core.rate import KeyLimits
from services.core.runtime import Runtime
from services.core.settings import Settings

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


OVER_BUDGET = frozenset({158, 159, 396})
"""ClickHouse's TOO_MANY_ROWS, TIMEOUT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES."""


async def _run(engine: ClickHouse | None, sql: str, params: dict[str, Any]) -> Rows:
    try:
        return await _engine(engine).query(sql, params)
    except ClickHouseError as exc:
        if exc.code in OVER_BUDGET:
            raise ApiError(
                422,
                "too_expensive",
                "the question is over its budget of rows or time: narrow since..until",
                "since",
            ) from exc
        raise ApiError(503, "clickhouse_unavailable", f"analytics query failed: {exc}") from exc


def make_router(rt: Runtime, engines: Engines) -> APIRouter:
    router = APIRouter(prefix="/v1/analytics", route_class=StrictJsonRoute)
    limits = KeyLimits(rt.settings.analytics_rate_per_min)

    async def principal(who: Principal = Depends(rt.access.caller)) -> Principal:  # noqa: B008
        wait = limits.admit(who.caller, time.monotonic())
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"at most {limits.per_minute:g} analytics requests a minute per API key; "
                f"retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        return who

    _add_rollup_routes(router, rt.settings, engines, Depends(principal))
    _add_sql_route(router, engines, Depends(principal))
    _add_cost_replay_route(router, rt.settings, engines, Depends(principal))
    return router


def _add_rollup_routes(
    router: APIRouter, settings: Settings, engines: Engines, who_dep: Any
) -> None:
    max_days = {
        Interval.MINUTE: settings.analytics_max_minute_window_days,
        Interval.HOUR: settings.analytics_max_hour_window_days,
    }

    @router.get("/cost", response_model=CostRows, responses=error_responses(401, 422, 429, 503))
    async def cost(
        group_by: CostGroup = CostGroup.MODEL,
        since: Instant | None = None,
        until: Instant | None = None,
        who: Principal = who_dep,
    ) -> JsonResponse:
        rows = await _run(engines.reader, *queries.cost(group_by, since, until, _tenant(who)))
        return JsonResponse({"rows": queries.jsonable(rows.dicts())})

    @router.get(
        "/throughput",
        response_model=ThroughputRows,
        responses=error_responses(401, 422, 429, 503),
    )
    async def throughput(
        interval: Interval = Interval.MINUTE,
        since: Instant | None = None,
        until: Instant | None = None,
        who: Principal = who_dep,
    ) -> JsonResponse:
        end = until or dt.datetime.now(dt.UTC)
        start = since or end - DEFAULT_WINDOW
        problem = too_wide(start, end, max_days[interval], interval.value)
        if problem is not None:
            raise ApiError(422, "invalid_request", problem, "since")
        rows = await _run(engines.reader, *queries.throughput(interval, start, end, _tenant(who)))
        return JsonResponse({"rows": queries.jsonable(rows.dicts())})

    @router.get(
        "/latency", response_model=LatencyRows, responses=error_responses(401, 422, 429, 503)
    )
    async def latency(
        group_by: LatencyGroup = LatencyGroup.MODEL,
        since: Instant | None = None,
        who: Principal = who_dep,
    ) -> JsonResponse:
        rows = await _run(engines.reader, *queries.latency(group_by, since, _tenant(who)))
        out = rows.dicts()
        for r in out:
            for column in ("ttft_ms", "itl_ms", "duration_ms"):
                r[column] = queries.percentiles(r[column])
        return JsonResponse({"rows": queries.jsonable(out)})


def _add_sql_route(router: APIRouter, engines: Engines, who_dep: Any) -> None:
    @router.post(
        "/sql",
        response_model=SqlAnswer,
        responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    )
    async def sql(body: SqlRequest, who: Principal = who_dep) -> JsonResponse:
        if not who.is_admin:
            raise ApiError(403, "forbidden", "only an admin may run SQL")
        try:
            rows = await _engine(engines.read_only).query(body.sql)
        except ClickHouseError as exc:
            if exc.code is None:
                raise ApiError(503, "clickhouse_unavailable", str(exc)) from exc
            raise ApiError(400, "sql_refused", _first_line(exc), "sql") from exc
        return JsonResponse(
            {"columns": rows.columns, "rows": [queries.jsonable(list(r)) for r in rows.rows]}
        )


def _add_cost_replay_route(
    router: APIRouter, settings: Settings, engines: Engines, who_dep: Any
) -> None:
    page_rows = min(cost_replay.PAGE_ROWS, settings.analytics_max_rows)

    @router.post(
        "/cost-replay",
        response_model=CostReplay,
        responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    )
    async def replay(body: cost_replay.CostReplayRequest, who: Principal = who_dep) -> JsonResponse:
        """Reprice the finished jobs of ``since``..``until`` under ``prices`` into a replay of
        their own (table ``cost_replays``), and answer the sums by model and by tenant."""
        if not who.is_admin:
            raise ApiError(403, "forbidden", "only an admin may replay costs")
        problem = cost_replay.price_problem(body.prices)
        if problem is not None:
            raise ApiError(422, "invalid_request", problem[1], problem[0])
        if body.since is not None and body.until is not None and body.since >= body.until:
            raise ApiError(422, "invalid_request", "since must be before until", "since")
        prices = Prices(dict(body.prices.models))
        try:
            out = await cost_replay.run(
                _engine(engines.reader), prices, body.since, body.until, page_rows
            )
        except cost_replay.CostOverflowError as exc:
            raise ApiError(422, "invalid_request", str(exc), "prices") from exc
        except ClickHouseError as exc:
            if exc.code in OVER_BUDGET:
                raise ApiError(
                    422,
                    "too_expensive",
                    "a page of the replay is over its budget: narrow since..until",
                    "since",
                ) from exc
            raise ApiError(503, "clickhouse_unavailable", f"cost replay failed: {exc}") from exc
        return JsonResponse(out)


def _first_line(exc: ClickHouseError) -> str:
    """ClickHouse's own message, without the driver's prefix and the version trailer."""
    text = str(exc)
    start = text.find("DB::Exception:")
    text = text[start + len("DB::Exception:") :] if start >= 0 else text
    return text.split("(version")[0].strip().splitlines()[0][:1000]
