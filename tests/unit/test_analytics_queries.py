"""The analytics questions as SQL: values bound as parameters, a user's always their tenant's."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from uuid import UUID

import pytest

from services.analytics import queries
from services.analytics.queries import CostGroup, Interval, LatencyGroup

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("group", list(CostGroup))
def test_cost_groups_by_a_fixed_key_and_binds_every_value(group: CostGroup) -> None:
    sql, params = queries.cost(group, T0, T0 + dt.timedelta(days=1), "alice")
    assert "FROM cost_hourly" in sql and f"AS {group.value}" in sql
    assert params == {"since": T0, "until": T0 + dt.timedelta(days=1), "tenant": "alice"}
    assert "alice" not in sql and "2026" not in sql, "values only as parameters"


def test_an_admin_question_has_no_tenant_filter_and_open_bounds() -> None:
    sql, params = queries.cost(CostGroup.MODEL, None, None, None)
    assert params == {} and "tenant =" not in sql


def test_a_naive_time_is_utc() -> None:
    _, params = queries.cost(CostGroup.DAY, dt.datetime(2026, 1, 1), None, None)
    assert params["since"] == T0


@pytest.mark.parametrize(("interval", "step"), [(Interval.MINUTE, 60), (Interval.HOUR, 3600)])
def test_throughput_fills_empty_intervals_at_its_step(interval: Interval, step: int) -> None:
    sql, params = queries.throughput(interval, T0, T0 + dt.timedelta(hours=1), "bob")
    assert "WITH FILL" in sql and f"STEP toIntervalSecond({step})" in sql
    assert f"tokens / {step} AS tokens_per_s" in sql
    assert params["tenant"] == "bob"


@pytest.mark.parametrize("group", list(LatencyGroup))
def test_latency_merges_the_hourly_digests(group: LatencyGroup) -> None:
    sql, _ = queries.latency(group, None, None)
    assert sql.count("quantilesTDigestMerge(0.5, 0.9, 0.99)") == 3
    assert f"GROUP BY {group.value}" in sql


def test_percentiles_name_p50_p90_p99_and_nan_is_no_value() -> None:
    assert queries.percentiles([1.23456, math.nan, 3.0]) == {"p50": 1.235, "p90": None, "p99": 3.0}


def test_clickhouse_values_become_json() -> None:
    value = {
        "d": Decimal("0.000000001"),
        "t": dt.datetime(2026, 1, 1, 12),
        "day": dt.date(2026, 1, 1),
        "b": b"\xffok",
        "u": UUID(int=1),
        "l": (1, math.inf),
    }
    assert queries.jsonable(value) == {
        "d": 1e-9,
        "t": "2026-01-01T12:00:00+00:00",
        "day": "2026-01-01",
        "b": "\ufffdok",
        "u": "00000000-0000-0000-0000-000000000001",
        "l": [1, None],
    }
