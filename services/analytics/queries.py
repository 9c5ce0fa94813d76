"""The analytics API's questions as SQL on the rollups, and their answers as JSON rows. Pure.

Each function returns ``(sql, parameters)``; values reach ClickHouse as bound
parameters, group names only from fixed tables. ``tenant`` None means every
tenant (an admin); a user's questions always carry their tenant.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

QUANTILES = ("p50", "p90", "p99")


class CostGroup(StrEnum):
    MODEL = "model"
    TENANT = "tenant"
    DAY = "day"
    PRIORITY = "priority"


class LatencyGroup(StrEnum):
    MODEL = "model"
    TENANT = "tenant"


class Interval(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"


_COST_KEY = {
    CostGroup.MODEL: "model",
    CostGroup.TENANT: "tenant",
    CostGroup.DAY: "toDate(hour)",
    CostGroup.PRIORITY: "priority",
}
_SECONDS = {Interval.MINUTE: 60, Interval.HOUR: 3600}


def utc(t: dt.datetime) -> dt.datetime:
    """A naive time is UTC."""
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _where(
    column: str, since: dt.datetime | None, until: dt.datetime | None, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    parts, params = ["1"], dict[str, Any]()
    if since is not None:
        parts.append(f"{column} >= toStartOfHour({{since:DateTime64(6, 'UTC')}})")
        params["since"] = utc(since)
    if until is not None:
        parts.append(f"{column} < {{until:DateTime64(6, 'UTC')}}")
        params["until"] = utc(until)
    if tenant is not None:
        parts.append("tenant = {tenant:String}")
        params["tenant"] = tenant
    return " AND ".join(parts), params


def cost(
    group: CostGroup, since: dt.datetime | None, until: dt.datetime | None, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    """Jobs, tokens and dollars per group, from ``cost_hourly`` (whole hours)."""
    where, params = _where("hour", since, until, tenant)
    sql = (
        f"SELECT {_COST_KEY[group]} AS {group.value}, sum(jobs) AS jobs, "
        "sum(succeeded) AS succeeded, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd "
        f"FROM cost_hourly WHERE {where} GROUP BY {group.value} "
        f"ORDER BY cost_usd DESC, {group.value}"
    )
    return sql, params


def throughput(
    interval: Interval, since: dt.datetime, until: dt.datetime, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    """Jobs finished and tokens streamed per interval, empty intervals as zeros."""
    step = _SECONDS[interval]
    bucket = "minute" if interval is Interval.MINUTE else "toStartOfHour(minute)"
    start = f"toStartOfInterval({{since:DateTime('UTC')}}, toIntervalSecond({step}))"
    params: dict[str, Any] = {"since": utc(since), "until": utc(until)}
    tenant_filter = ""
    if tenant is not None:
        tenant_filter = " AND tenant = {tenant:String}"
        params["tenant"] = tenant
    sql = (
        f"SELECT t, jobs, succeeded, tokens, jobs / {step} AS jobs_per_s, "
        f"tokens / {step} AS tokens_per_s FROM ("
        f"SELECT {bucket} AS t, sum(jobs) AS jobs, sum(succeeded) AS succeeded, "
        f"sum(tokens) AS tokens FROM throughput_minutely "
        f"WHERE minute >= {start} AND minute < {{until:DateTime('UTC')}}{tenant_filter} "
        f"GROUP BY t ORDER BY t WITH FILL FROM {start} "
        f"TO {{until:DateTime('UTC')}} STEP toIntervalSecond({step}))"
    )
    return sql, params


def latency(
    group: LatencyGroup, since: dt.datetime | None, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    """TTFT, inter-token latency and duration percentiles per group, from ``latency_hourly``."""
    where, params = _where("hour", since, None, tenant)
    merged = ", ".join(
        f"quantilesTDigestMerge(0.5, 0.9, 0.99)({c}) AS {c}"
        for c in ("ttft_ms", "itl_ms", "duration_ms")
    )
    sql = (
        f"SELECT {group.value}, sum(jobs) AS jobs, {merged} FROM latency_hourly "
        f"WHERE {where} GROUP BY {group.value} ORDER BY {group.value}"
    )
    return sql, params


def percentiles(values: list[float] | tuple[float, ...]) -> dict[str, float | None]:
    """``[p50, p90, p99]`` as ``{"p50", "p90", "p99"}`` (None where ClickHouse had no value)."""
    return {
        q: (None if math.isnan(v) else round(v, 3))  # NaN: no value in the group
        for q, v in zip(QUANTILES, values, strict=True)
    }


def jsonable(value: Any) -> Any:
    """A ClickHouse value as JSON: decimals as numbers, times as ISO 8601, the rest as text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return utc(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, UUID | dt.timedelta | complex):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
