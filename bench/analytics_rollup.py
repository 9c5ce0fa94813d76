"""Analytics rollups: cost by model over 10,000,000 ``jobs`` rows in ≤ 0.5 s (the target).

``python -m bench.analytics_rollup`` (also part of ``make bench``; ``--quick`` for 1,000,000
rows, ``--help`` for the knobs). No broker: chDB only, in this process, on a fresh directory
(``--data-root``, default the system's temp dir), schema by ``migrate()``.

1. Insert: ``--rows`` synthetic finished jobs go into ``jobs`` by server-side
   ``INSERT … SELECT … FROM numbers()`` in chunks of ``--chunk`` rows, so the materialized
   views fill ``cost_hourly``, ``latency_hourly`` and ``throughput_minutely`` as the sink's
   inserts would. The jobs finish in time order over ``--days`` days up to this hour, with
   10 tenants, 6 OpenAI models and 4 priorities (skewed, as real traffic is), token counts,
   exact nano-dollar costs at the shipped prices (``services/core/prices.json``), 95 %
   succeeded, 3 % failed, 2 % cancelled, 4 % on a second attempt.
2. Queries: each of the analytics API's questions (``services.analytics.queries``) runs
   ``--reps`` times through ``ClickHouse.query`` (the API's path: the client's thread,
   clickhouse-connect, rows as Python values): first (cold), min, median, max. The same
   question is then asked of ``jobs`` directly, to show what the rollup saves, and for cost
   and throughput both answers must be identical (latency: t-digests are approximate, so the
   largest relative difference of the percentiles is shown instead).

Figures: a table and one JSON line. The rollups are read as they are after the insert (the
parts that background merges have not folded yet included), which is what the API sees.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from bench.analytics_common import (
    console,
    cpu_by_thread,
    figures_table,
    fresh_chdb_dir,
    host_line,
    spread,
    thread_cpu_s,
)
from services.analytics import queries
from services.analytics.clickhouse import ClickHouse, Rows
from services.analytics.migrate import migrate
from services.analytics.queries import CostGroup, Interval, LatencyGroup
from services.core.prices import load_prices

DATABASE = "bench_rollup"
TARGET_MS = 500.0
TENANTS = 10
PRIORITIES = (("urgent", 5), ("high", 20), ("normal", 60), ("low", 15))
MODELS = (  # (model, share %): the small models carry most of the traffic
    ("gpt-4o-mini", 35),
    ("gpt-4.1-mini", 20),
    ("gpt-4o", 15),
    ("gpt-5-mini", 15),
    ("gpt-4.1", 10),
    ("o3-mini", 5),
)
ROLLUPS = ("cost_hourly", "latency_hourly", "throughput_minutely")
BUSY_TENANT = "tenant-03"


@dataclass(frozen=True)
class Config:
    rows: int
    chunk: int
    days: int
    reps: int
    data_root: Path | None
    keep: bool


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.analytics_rollup", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1,000,000 rows instead of 10,000,000")
    p.add_argument("--rows", type=int, help="synthetic jobs rows (default 10,000,000)")
    p.add_argument("--chunk", type=int, default=1_000_000, help="rows per INSERT … SELECT")
    p.add_argument("--days", type=int, default=30, help="the jobs finish over this many days")
    p.add_argument("--reps", type=int, default=9, help="runs of each query")
    p.add_argument("--data-root", type=Path, help="where the fresh chDB directory goes")
    p.add_argument("--keep", action="store_true", help="keep the chDB directory afterwards")
    a = p.parse_args(argv)
    rows = a.rows or (1_000_000 if a.quick else 10_000_000)
    return Config(rows, min(a.chunk, rows), a.days, a.reps, a.data_root, a.keep)


# --- the synthetic jobs -------------------------------------------------------------------


def _pick(values: list[str], weights: list[int], salt: int) -> str:
    """SQL: one of ``values``, chosen by a hash of the row number with these weights (%)."""
    slots = [i + 1 for i, w in enumerate(weights) for _ in range(w)]
    assert len(slots) == 100, weights
    index = f"[{', '.join(map(str, slots))}][1 + cityHash64(number, {salt}) % 100]"
    return f"[{', '.join(values)}][{index}]"


def _nano_prices() -> tuple[list[str], list[str]]:
    """Input and output prices of ``MODELS`` in nano-dollars per token (exact integers)."""
    prices = load_prices()
    ins, outs = [], []
    for model, _ in MODELS:
        price = prices.price(model)
        assert price is not None, model
        ins.append(str(int(price.input * 1000)))
        outs.append(str(int(price.output * 1000)))
    return ins, outs


def insert_sql(start: int, count: int, total: int, first: dt.datetime, days: int) -> str:
    """``INSERT INTO jobs`` of rows ``start … start + count`` of ``total`` synthetic jobs.

    Row ``n`` finishes at ``first + n / total`` of the span (plus up to a second of jitter),
    so consecutive inserts cover consecutive hours, as the sink's do. ``u(k)`` is a uniform
    number in [0, 1) from a hash of the row number.
    """
    step_us = days * 86_400_000_000 // total
    ins, outs = _nano_prices()
    model_ix = _pick([str(i + 1) for i in range(len(MODELS))], [w for _, w in MODELS], 4)
    tenant_w = [23, 17, 13, 11, 9, 8, 7, 5, 4, 3]  # a few big tenants, a long tail
    tenant = _pick([f"'tenant-{i:02d}'" for i in range(TENANTS)], tenant_w, 2)
    priority = _pick([f"'{p}'" for p, _ in PRIORITIES], [w for _, w in PRIORITIES], 3)
    models = ", ".join(f"'{m}'" for m, _ in MODELS)

    def u(k: int) -> str:
        return f"(cityHash64(number, {k}) / 18446744073709551616.0)"

    return f"""
INSERT INTO jobs
SELECT job_id, attempt, tenant, batch_id, priority, model, 'openai' AS provider, status,
    error_kind, finish_reason, worker_id, prompt_tokens, completion_tokens,
    completion_tokens AS tokens,
    toDecimal64(prompt_tokens * p_in + completion_tokens * p_out, 9) / 1000000000 AS cost_usd,
    toDecimal64(prompt_tokens * p_in + 1024 * p_out, 9) / 1000000000 AS estimated_cost_usd,
    started - toIntervalMicrosecond(toUInt64(queue_wait * 1000)) AS queued_at,
    started AS started_at,
    if(ttft IS NULL, NULL, started + toIntervalMicrosecond(toUInt64(ttft * 1000)))
        AS first_token_at,
    finished_at, queue_wait AS queue_wait_ms, ttft AS ttft_ms,
    itl AS itl_p50_ms, itl * 1.7 AS itl_p90_ms, itl * 3.5 AS itl_p99_ms,
    duration AS duration_ms, completion_tokens / (duration / 1000) AS tokens_per_s,
    toUInt16(number % 3) AS kafka_partition, intDiv(number, 3) AS kafka_offset
FROM (
    SELECT number,
        toString(generateUUIDv4(number)) AS job_id,
        toUInt16(if({u(1)} < 0.04, 2, 1)) AS attempt,
        {tenant} AS tenant,
        if({u(5)} < 0.1, concat('batch-', toString(intDiv(number, 1000))), '') AS batch_id,
        {priority} AS priority,
        {model_ix} AS m,
        [{models}][m] AS model,
        [{", ".join(ins)}][m] AS p_in,
        [{", ".join(outs)}][m] AS p_out,
        {u(6)} AS r,
        multiIf(r < 0.95, 'succeeded', r < 0.98, 'failed', 'cancelled') AS status,
        multiIf(status = 'failed', ['rate_limited', 'timeout', 'provider'][1 + number % 3],
                '') AS error_kind,
        if(status = 'succeeded', if({u(7)} < 0.9, 'stop', 'length'), '') AS finish_reason,
        concat('worker-', toString(cityHash64(number, 8) % 16)) AS worker_id,
        toUInt32(30 + pow({u(9)}, 2) * 6000) AS prompt_tokens,
        toUInt32(if(status = 'succeeded', 1, {u(10)}) * (5 + pow({u(11)}, 2) * 1500))
            AS completion_tokens,
        parseDateTime64BestEffort('{first.isoformat()}', 6, 'UTC')
            + toIntervalMicrosecond(number * {step_us} + cityHash64(number, 12) % 1000000)
            AS finished_at,
        if(status = 'cancelled' AND {u(13)} < 0.5, NULL, 120 + pow({u(14)}, 2) * 3000) AS ttft,
        if(completion_tokens < 2, NULL, 6 + {u(15)} * 60) AS itl,
        ifNull(ttft, 0) + completion_tokens * ifNull(itl, 20) * 1.05 + 50 AS duration,
        finished_at - toIntervalMicrosecond(toUInt64(duration * 1000)) AS started,
        pow({u(16)}, 3) * 20000 AS queue_wait
    FROM numbers({start}, {count})
)"""


async def insert_jobs(ch: ClickHouse, cfg: Config, first: dt.datetime) -> dict[str, Any]:
    """Every synthetic row, chunk by chunk, with a progress line per chunk."""
    console.print(
        f"inserting {cfg.rows:,} jobs rows in chunks of {cfg.chunk:,} "
        f"(finished {first:%Y-%m-%d %H:%M} … +{cfg.days} days)"
    )
    threads = thread_cpu_s()
    t0 = time.perf_counter()
    done = 0
    while done < cfg.rows:
        count = min(cfg.chunk, cfg.rows - done)
        t = time.perf_counter()
        await ch.command(insert_sql(done, count, cfg.rows, first, cfg.days))
        done += count
        took, total = time.perf_counter() - t, time.perf_counter() - t0
        console.print(
            f"{total:6.1f}s inserted {done:>11,}/{cfg.rows:,} rows; this chunk"
            f" {count / took:>9,.0f} rows/s, so far {done / total:>9,.0f} rows/s;"
            f" load {os.getloadavg()[0]:.2f}"
        )
    seconds = time.perf_counter() - t0
    return {
        "rows": cfg.rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(cfg.rows / seconds),
        "cpu_pct_by_thread": cpu_by_thread(threads, thread_cpu_s(), seconds),
    }


async def table_sizes(ch: ClickHouse) -> dict[str, dict[str, int]]:
    """Rows, active parts and bytes on disk of ``jobs`` and each rollup."""
    rows = await ch.query(
        "SELECT table, sum(rows), count(), sum(bytes_on_disk) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table",
        {"db": ch.database},
    )
    return {
        t: {"rows": int(r), "parts": int(p), "bytes": int(b)}
        for t, r, p, b in rows.rows
        if t == "jobs" or t in ROLLUPS
    }


# --- the questions ------------------------------------------------------------------------


def cost_from_jobs(
    group: CostGroup, since: dt.datetime | None, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    """``queries.cost`` asked of ``jobs``: the same groups, columns, order and hour bound."""
    key = {
        CostGroup.MODEL: "model",
        CostGroup.TENANT: "tenant",
        CostGroup.DAY: "toDate(finished_at)",
        CostGroup.PRIORITY: "priority",
    }[group]
    where, params = ["1"], dict[str, Any]()
    if since is not None:
        where.append("finished_at >= toStartOfHour({since:DateTime64(6, 'UTC')})")
        params["since"] = queries.utc(since)
    if tenant is not None:
        where.append("tenant = {tenant:String}")
        params["tenant"] = tenant
    sql = (
        f"SELECT {key} AS {group.value}, count() AS jobs, countIf(status = 'succeeded') AS "
        "succeeded, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS "
        f"completion_tokens, sum(cost_usd) AS cost_usd FROM jobs WHERE {' AND '.join(where)} "
        f"GROUP BY {group.value} ORDER BY cost_usd DESC, {group.value}"
    )
    return sql, params


def latency_from_jobs(group: LatencyGroup) -> tuple[str, dict[str, Any]]:
    """``queries.latency`` (no bounds) asked of ``jobs``, with the view's filter and columns."""
    q = "quantilesTDigest(0.5, 0.9, 0.99)"
    sql = (
        f"SELECT {group.value}, count() AS jobs, {q}(ttft) AS ttft_ms, "
        "quantilesTDigestIf(0.5, 0.9, 0.99)(itl, has_itl) AS itl_ms, "
        f"{q}(duration) AS duration_ms FROM (SELECT {group.value}, "
        "assumeNotNull(ttft_ms) AS ttft, ifNull(itl_p50_ms, 0) AS itl, "
        "itl_p50_ms IS NOT NULL AS has_itl, ifNull(duration_ms, 0) AS duration FROM jobs "
        f"WHERE status = 'succeeded' AND ttft_ms IS NOT NULL) "
        f"GROUP BY {group.value} ORDER BY {group.value}"
    )
    return sql, {}


def throughput_from_jobs(
    interval: Interval, since: dt.datetime, until: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """``queries.throughput`` (every tenant) asked of ``jobs``: the same buckets and bounds."""
    step = 60 if interval is Interval.MINUTE else 3600
    bucket = "toStartOfMinute" if interval is Interval.MINUTE else "toStartOfHour"
    start = f"toStartOfInterval({{since:DateTime('UTC')}}, toIntervalSecond({step}))"
    until_ = "{until:DateTime('UTC')}"
    sql = (
        f"SELECT t, jobs, succeeded, tokens, jobs / {step} AS jobs_per_s, "
        f"tokens / {step} AS tokens_per_s FROM ("
        f"SELECT {bucket}(finished_at) AS t, count() AS jobs, "
        "countIf(status = 'succeeded') AS succeeded, sum(tokens) AS tokens FROM jobs "
        f"WHERE finished_at >= {start} AND finished_at < {until_} GROUP BY t "
        f"ORDER BY t WITH FILL FROM {start} TO {until_} STEP toIntervalSecond({step}))"
    )
    return sql, {"since": queries.utc(since), "until": queries.utc(until)}


@dataclass
class Question:
    """One API question, how it is asked of ``jobs`` directly, and how answers compare."""

    name: str
    api: tuple[str, dict[str, Any]]
    direct: tuple[str, dict[str, Any]] | None
    compare: str  # "identical" | "approximate" | ""
    timings: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[str, Rows] = field(default_factory=dict)


def questions(end: dt.datetime, days: int) -> list[Question]:
    week = end - dt.timedelta(days=7)
    day = end - dt.timedelta(days=1)
    start = end - dt.timedelta(days=days)
    model, tenant, daily = CostGroup.MODEL, CostGroup.TENANT, CostGroup.DAY
    return [
        Question(
            "cost by model",
            queries.cost(model, None, None, None),
            cost_from_jobs(model, None, None),
            "identical",
        ),
        Question(
            f"cost by model, tenant {BUSY_TENANT}",
            queries.cost(model, None, None, BUSY_TENANT),
            cost_from_jobs(model, None, BUSY_TENANT),
            "identical",
        ),
        Question(
            "cost by model, since 7 days",
            queries.cost(model, week, None, None),
            cost_from_jobs(model, week, None),
            "identical",
        ),
        Question(
            "cost by tenant",
            queries.cost(tenant, None, None, None),
            cost_from_jobs(tenant, None, None),
            "identical",
        ),
        Question(
            "cost by day",
            queries.cost(daily, None, None, None),
            cost_from_jobs(daily, None, None),
            "identical",
        ),
        Question(
            "latency by model",
            queries.latency(LatencyGroup.MODEL, None, None),
            latency_from_jobs(LatencyGroup.MODEL),
            "approximate",
        ),
        Question(
            "throughput per minute, last 24 h",
            queries.throughput(Interval.MINUTE, day, end, None),
            throughput_from_jobs(Interval.MINUTE, day, end),
            "identical",
        ),
        Question(
            f"throughput per hour, {days} days",
            queries.throughput(Interval.HOUR, start, end, None),
            throughput_from_jobs(Interval.HOUR, start, end),
            "identical",
        ),
    ]


async def timed(
    ch: ClickHouse, sql: str, params: dict[str, Any], reps: int
) -> tuple[list[float], Rows]:
    ms, answer = [], Rows([], [])
    for _ in range(reps):
        t = time.perf_counter()
        answer = await ch.query(sql, params)
        ms.append((time.perf_counter() - t) * 1000)
    return ms, answer


def max_relative_diff(a: Rows, b: Rows) -> float:
    """The largest relative difference between the percentile lists of two latency answers."""
    worst = 0.0
    for ra, rb in zip(a.rows, b.rows, strict=True):
        for va, vb in zip(ra[2:], rb[2:], strict=True):
            for x, y in zip(va, vb, strict=True):
                if not (math.isnan(x) or math.isnan(y)) and max(abs(x), abs(y)) > 0:
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


async def ask(ch: ClickHouse, qs: list[Question], reps: int) -> None:
    for q in qs:
        asked = [("rollup", q.api)] + ([("jobs", q.direct)] if q.direct is not None else [])
        for how, (sql, params) in asked:
            q.timings[how], q.answers[how] = await timed(ch, sql, params, reps)
        r, j = spread(q.timings["rollup"]), spread(q.timings.get("jobs", [math.nan]))
        console.print(
            f"  {q.name:<36} rollup median {r['median']:8.2f} ms (max {r['max']:8.2f})"
            f" | from jobs median {j['median']:9.2f} ms | {len(q.answers['rollup'].rows)} rows"
            f" | {verdict(q)}"
        )


def verdict(q: Question) -> str:
    if "jobs" not in q.answers:
        return ""
    a, b = q.answers["rollup"], q.answers["jobs"]
    if q.compare == "identical":
        return "identical" if a.rows == b.rows else "DIFFERENT"
    if [r[:2] for r in a.rows] != [r[:2] for r in b.rows]:
        return "DIFFERENT groups or counts"
    return f"percentiles within {100 * max_relative_diff(a, b):.1f} %"


# --- the run ------------------------------------------------------------------------------


async def run(cfg: Config, chdb: Path) -> dict[str, Any]:
    ch = await ClickHouse.open(f"chdb://{chdb}", DATABASE)
    try:
        await migrate(ch)
        end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        first = end - dt.timedelta(days=cfg.days)
        inserted = await insert_jobs(ch, cfg, first)
        sizes = await table_sizes(ch)
        console.print(
            "tables: "
            + "; ".join(f"{t} {s['rows']:,} rows in {s['parts']} parts" for t, s in sizes.items())
        )
        qs = questions(end, cfg.days)
        console.print(f"asking each question {cfg.reps} times of the rollups, then of jobs")
        threads, t0 = thread_cpu_s(), time.perf_counter()
        await ask(ch, qs, cfg.reps)
        query_cpu = cpu_by_thread(threads, thread_cpu_s(), time.perf_counter() - t0)
        total = await ch.query("SELECT count(), sum(cost_usd) FROM jobs")
    finally:
        await ch.close()
    count, cost = total.rows[0]
    return {
        "insert": inserted,
        "tables": sizes,
        "jobs_total": {"rows": int(count), "cost_usd": str(Decimal(cost))},
        "queries": {
            q.name: {
                "rows": len(q.answers["rollup"].rows),
                "rollup_ms": spread(q.timings["rollup"]),
                **({"jobs_ms": spread(q.timings["jobs"])} if "jobs" in q.timings else {}),
                "answers": verdict(q),
            }
            for q in qs
        },
        "query_cpu_pct_by_thread": query_cpu,
    }


def rows_of_table(cfg: Config, f: dict[str, Any]) -> list[tuple[str, str, str]]:
    ins, tables = f["insert"], f["tables"]
    out = [
        (
            f"insert {ins['rows']:,} jobs rows (server-side INSERT … SELECT)",
            f"{ins['seconds']:.1f} s",
            f"{ins['rows_per_s']:,} rows/s, chunks of {cfg.chunk:,}; the views fill the rollups",
        ),
        *(
            (
                f"{t} rows / active parts",
                f"{s['rows']:,} / {s['parts']}",
                f"{s['bytes'] / 1e6:,.1f} MB on disk",
            )
            for t, s in tables.items()
        ),
    ]
    for name, q in f["queries"].items():
        r = q["rollup_ms"]
        target = ""
        if name == "cost by model":
            ok = "meets" if r["median"] <= TARGET_MS else "MISSES"
            target = f"target ≤ {TARGET_MS:.0f} ms over {cfg.rows:,} rows: {ok}; "
        out.append(
            (
                f"{name}: min / median / max",
                f"{r['min']:.1f} / {r['median']:.1f} / {r['max']:.1f} ms",
                f"{target}first {r['first']:.1f} ms; {q['rows']} rows",
            )
        )
        if "jobs_ms" in q:
            j = q["jobs_ms"]
            out.append(
                (
                    "  the same from jobs: min / median / max",
                    f"{j['min']:.1f} / {j['median']:.1f} / {j['max']:.1f} ms",
                    f"x{j['median'] / max(r['median'], 1e-9):.0f} the rollup's median;"
                    f" answers {q['answers']}",
                )
            )
    return out


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    host = host_line()
    with fresh_chdb_dir(cfg.data_root, cfg.keep) as chdb:
        console.print(f"chDB in {chdb}, database {DATABASE}")
        figures = asyncio.run(run(cfg, chdb))
    host["loadavg_after"] = os.getloadavg()
    console.print(
        figures_table(
            f"analytics rollups: {cfg.rows:,} jobs rows on chDB", rows_of_table(cfg, figures)
        )
    )
    console.print(
        f"load average before {host['loadavg_before'][0]:.2f}, after"
        f" {host['loadavg_after'][0]:.2f} ({host['cpus']} CPUs; other work skews every figure)"
    )
    line = {"bench": "analytics_rollup", "machine": host, "target_ms": TARGET_MS, **figures}
    print(orjson.dumps(line).decode())


if __name__ == "__main__":
    main()
