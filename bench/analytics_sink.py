"""Analytics sink: ≥ 100,000 event rows/s from ``tokenrelay.lifecycle`` into chDB (the target).

``python -m bench.analytics_sink`` (also part of ``make bench``; ``--quick`` for a short smoke
run, ``--help`` for the knobs). Uses the broker at ``TOKENRELAY_KAFKA_BOOTSTRAP`` when one
answers there, else starts a throwaway local broker; fresh topics per run. chDB runs in this
process on a fresh directory, as it does in the public face that owns it.

1. Pre-produce, with our ``Producer`` (``linger.ms=50``): ``--jobs`` synthetic jobs, each a
   ``queued``, ``started`` and ``completed`` (usage, cost at the shipped prices, ttft,
   itl_ms, duration, a content of ~4 characters per completion token) on the lifecycle
   topic the sink reads; and ``--token-jobs`` jobs with ``--tokens-per-job`` ``token``
   events each on a second one, to show what skipping tokens costs (the worker copies only
   progress ticks there, so that set is the worst case). The jobs run in windows of 1,000
   (all queued, then started, tokens, completed), so their events interleave as a busy
   worker pool's do. Every event type is checked once against ``schemas.events``.
2. For each ``--grid`` entry ``batch_records:flush_s`` (``sink_batch_records``,
   ``sink_flush_s``): a fresh database (``migrate()``) and consumer group, then the real
   ``services.analytics.sink.Sink`` from ``start()`` until the group's committed offsets
   reach the end of every partition. A progress line every ``--progress-s``.
3. Figures per run: rows/s into ``job_events`` + ``jobs`` (and each table) and records/s,
   over the time from the first record read to the last commit (the group join before it is
   shown apart); the flush histogram (``tokenrelay_sink_flush_seconds``); wall seconds of
   each step of the sink's loop (poll, decode + rows, commits, each insert; see ``Steps``);
   CPU % of this process by thread and of the machine; rows and dollars in ClickHouse
   checked against what was produced. The database is dropped after each run so its
   merges stop.

``--py-spy FILE`` records the first run with py-spy (``pip install py-spy``) and prints where
the time went (Python frames of every thread); ``--cprofile`` profiles the event loop's thread
of the first run instead. A table and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import time
import uuid
from dataclasses import dataclass
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
    thread_cpu_s,
)
from bench.analytics_events import PRODUCER, Dataset, prepare
from bench.analytics_profile import PySpy
from bench.processes import CpuMeter
from bench.worker_scheduling import broker
from services.analytics.clickhouse import ClickHouse
from services.analytics.migrate import migrate
from services.analytics.sink import Sink
from services.core.kafka import Consumer, Producer
from services.core.metrics import SINK_FLUSH_SECONDS, SINK_RECORDS, SINK_ROWS
from services.core.settings import Settings

TARGET_ROWS_PER_S = 100_000
FULL = {"jobs": 200_000, "token_jobs": 40_000}
QUICK = {"jobs": 20_000, "token_jobs": 4_000}
GRID = "50000:1,10000:1,100000:1,200000:1,50000:0.2,200000:5"
STALL_S = 120.0
WATCH_S = 0.05  # how often the run's end is looked for; the sink shares this loop
M_ROWS, M_RECORDS, M_FLUSH = (
    "tokenrelay_sink_rows_total",
    "tokenrelay_sink_records_total",
    "tokenrelay_sink_flush_seconds",
)
FLUSH_BUCKETS = (  # the histogram's upper bounds as prometheus_client labels them
    *("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"),
    *("30.0", "+Inf"),
)


@dataclass(frozen=True)
class Config:
    jobs: int
    token_jobs: int
    tokens_per_job: int
    partitions: int
    grid: list[tuple[int, float]]
    progress_s: float
    data_root: Path | None
    keep: bool
    py_spy: Path | None
    cprofile: bool


def parse_grid(text: str) -> list[tuple[int, float]]:
    out = []
    for item in text.split(","):
        records, _, flush = item.partition(":")
        out.append((int(records), float(flush or 1.0)))
    return out


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.analytics_sink", description=__doc__)
    p.add_argument("--quick", action="store_true", help="20,000 + 4,000 jobs, default grid only")
    p.add_argument("--jobs", type=int, help="lifecycle-only jobs: 3 records, 4 rows each")
    p.add_argument("--token-jobs", type=int, help="jobs with token events (0: no such run)")
    p.add_argument("--tokens-per-job", type=int, default=10, help="token events per token job")
    p.add_argument("--partitions", type=int, default=3, help="partitions of the lifecycle topics")
    p.add_argument("--grid", default=None, help=f"batch_records:flush_s,… (default {GRID})")
    p.add_argument("--progress-s", type=float, default=2.0, help="seconds between progress lines")
    p.add_argument("--data-root", type=Path, help="where the fresh chDB directory goes")
    p.add_argument("--keep", action="store_true", help="keep the chDB directory afterwards")
    p.add_argument("--py-spy", type=Path, help="record the first run with py-spy to this file")
    p.add_argument("--cprofile", action="store_true", help="cProfile the first run's loop thread")
    a = p.parse_args(argv)
    preset = QUICK if a.quick else FULL
    grid = parse_grid(a.grid or ("50000:1" if a.quick else GRID))
    return Config(
        a.jobs if a.jobs is not None else preset["jobs"],
        a.token_jobs if a.token_jobs is not None else preset["token_jobs"],
        a.tokens_per_job,
        a.partitions,
        grid,
        a.progress_s,
        a.data_root,
        a.keep,
        a.py_spy,
        a.cprofile,
    )


# --- one run of the sink ------------------------------------------------------------------


def snapshot() -> dict[str, float]:
    """The sink's counters and flush histogram, read from their own metric objects (reading
    the whole registry would run the process collector, which costs the loop real time)."""
    seen: dict[tuple[str, str], float] = {}
    for metric in (SINK_ROWS, SINK_RECORDS, SINK_FLUSH_SECONDS):
        for family in metric.collect():
            for s in family.samples:
                seen[(s.name, s.labels.get("table") or s.labels.get("le") or "")] = s.value
    out = {
        "job_events": seen.get((M_ROWS, "job_events"), 0.0),
        "jobs": seen.get((M_ROWS, "jobs"), 0.0),
        "records": seen.get((M_RECORDS, ""), 0.0),
        "flush_count": seen.get((f"{M_FLUSH}_count", ""), 0.0),
        "flush_sum": seen.get((f"{M_FLUSH}_sum", ""), 0.0),
    }
    for le in FLUSH_BUCKETS:
        out[f"le {le}"] = seen.get((f"{M_FLUSH}_bucket", le), 0.0)
    return out


def flush_histogram(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The run's flushes: count, mean, and how many fell in each bucket (upper bound)."""
    count = after["flush_count"] - before["flush_count"]
    total = after["flush_sum"] - before["flush_sum"]
    buckets, below = {}, 0.0
    for le in FLUSH_BUCKETS:
        n = after[f"le {le}"] - before[f"le {le}"]
        if n - below:
            buckets[f"≤{le}s"] = int(n - below)
        below = n
    return {
        "count": int(count),
        "mean_s": round(total / count, 3) if count else None,
        "sum_s": round(total, 2),
        "buckets": buckets,
    }


@dataclass
class Run:
    """One sink run: its settings, the time marks and the samples of its progress."""

    ds: Dataset
    batch_records: int
    flush_s: float
    settings: Settings
    t0: float = 0.0
    first_record: float | None = None
    done: float = 0.0


class Steps:
    """Wall seconds the sink spends in each step of its loop: its calls of ``Consumer.poll``,
    ``Sink._rows`` (decode and build the rows), ``Consumer.commit`` and ``ClickHouse.insert``
    (by table) are timed for the run, one timer per call, and restored afterwards. The steps
    run one after another, so what they leave of the run's time is the loop's own work."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[type, str, Any]] = []

    def __enter__(self) -> Steps:
        self._wrap(Consumer, "poll", lambda *_a, **_k: "poll")
        self._wrap(Sink, "_rows", lambda *_a, **_k: "decode + rows")
        self._wrap(Consumer, "commit", lambda *_a, **_k: "commit")
        self._wrap(ClickHouse, "insert", lambda _ch, table, *_a, **_k: f"insert {table}")
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, original in reversed(self._saved):
            setattr(cls, name, original)

    def _wrap(self, cls: type, name: str, label: Any) -> None:
        original, seconds = getattr(cls, name), self.seconds

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                key = label(*args, **kwargs)
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t

        setattr(cls, name, timed)
        self._saved.append((cls, name, original))


async def committed_all(look: Consumer, run: Run) -> bool:
    tps = [(run.ds.topic, p) for p in run.ds.ends]
    got = await look.committed(tps)
    return all(got[(run.ds.topic, p)].offset == end for p, end in run.ds.ends.items())


async def watch(
    run: Run, sink: Sink, look: Consumer, before: dict[str, float], progress_s: float
) -> None:
    """Wait until every row is in and every offset committed; a progress line now and then."""
    meter = CpuMeter({"bench": [os.getpid()]})
    last_line, last_rows, moved = run.t0, 0.0, time.perf_counter()
    while True:
        await asyncio.sleep(WATCH_S)
        now, snap = time.perf_counter(), snapshot()
        if sink.ready_reason() == "the analytics sink stopped":
            raise RuntimeError("the sink stopped during the run; see the log above")
        rows = snap["job_events"] + snap["jobs"] - before["job_events"] - before["jobs"]
        if run.first_record is None and snap["records"] > before["records"]:
            run.first_record = now
        if rows > last_rows:
            moved = now
        if now - moved > STALL_S:
            raise TimeoutError(f"no rows inserted for {STALL_S:.0f}s ({rows:,.0f}/{run.ds.rows:,})")
        if now - last_line >= progress_s:
            cpu = meter.lap()
            console.print(
                f"  {now - run.t0:5.1f}s read {snap['records'] - before['records']:>9,.0f}"
                f" records, inserted {rows:>9,.0f}/{run.ds.rows:,} rows"
                f" ({(rows - last_rows) / (now - last_line):>8,.0f} rows/s now);"
                f" flushes {snap['flush_count'] - before['flush_count']:.0f};"
                f" cpu % bench {cpu['bench']:3.0f} others {cpu['others']:3.0f}"
            )
            last_line, last_rows = now, rows
        if rows >= run.ds.rows and await committed_all(look, run):
            run.done = time.perf_counter()
            return


async def run_sink(run: Run, profile: PySpy | cProfile.Profile | None) -> dict[str, Any]:
    """Start the sink on a fresh database and group; stop it once all is committed."""
    s = run.settings
    ch = await ClickHouse.open(s.clickhouse_dsn, s.clickhouse_database)
    await migrate(ch)
    before, threads = snapshot(), thread_cpu_s()
    meter = CpuMeter({"bench": [os.getpid()]})
    async with (
        Producer(s.kafka_bootstrap) as dlq,
        Consumer(s.kafka_bootstrap, s.analytics_group) as look,
    ):
        sink = Sink(s, dlq, ch)
        if profile is not None:
            profile.enable()
        with Steps() as steps:
            run.t0 = time.perf_counter()
            await sink.start()
            try:
                await watch(run, sink, look, before, 2.0)
            finally:
                if profile is not None:
                    profile.disable()
                await sink.stop()
    after, cpu = snapshot(), meter.lap()
    by_thread = cpu_by_thread(threads, thread_cpu_s(), run.done - run.t0)
    stored = await ch.query(
        "SELECT (SELECT count() FROM job_events), (SELECT count() FROM jobs), "
        "(SELECT sum(cost_usd) FROM jobs), (SELECT count() FROM system.parts "
        "WHERE database = currentDatabase() AND active AND table IN ('job_events', 'jobs'))"
    )
    await ch.command(f"DROP DATABASE {s.clickhouse_database} SYNC")
    await ch.close()
    events, jobs, cost, parts = stored.rows[0]
    f = figures(run, before, after, cpu, by_thread, (events, jobs, Decimal(cost), parts))
    f["steps_s"] = {k: round(v, 2) for k, v in sorted(steps.seconds.items(), key=lambda kv: -kv[1])}
    return f


def figures(
    run: Run,
    before: dict[str, float],
    after: dict[str, float],
    cpu: dict[str, float],
    by_thread: dict[str, float],
    stored: tuple[int, int, Decimal, int],
) -> dict[str, Any]:
    ds = run.ds
    assert run.first_record is not None
    active = run.done - run.first_record
    inserted = {t: int(after[t] - before[t]) for t in ("job_events", "jobs")}
    events, jobs, cost, parts = stored
    checks = {
        "job_events_rows": events == ds.event_rows,
        "jobs_rows": jobs == ds.jobs,
        "cost_usd": cost == ds.cost_usd,
    }
    return {
        "dataset": ds.name,
        "batch_records": run.batch_records,
        "flush_s": run.flush_s,
        "records": ds.records,
        "rows": inserted,
        "join_s": round(run.first_record - run.t0, 2),
        "active_s": round(active, 2),
        "total_s": round(run.done - run.t0, 2),
        "rows_per_s": round(sum(inserted.values()) / active),
        "rows_per_s_by_table": {t: round(n / active) for t, n in inserted.items()},
        "records_per_s": round(ds.records / active),
        "rows_per_s_incl_join": round(sum(inserted.values()) / (run.done - run.t0)),
        "flush": flush_histogram(before, after),
        "parts_after": parts,
        "cpu_pct": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_pct_by_thread": by_thread,
        "checks": checks,
        "stored": {"job_events": events, "jobs": jobs, "cost_usd": str(cost)},
    }


def settings_for(
    bootstrap: str, chdb: Path, ds: Dataset, i: int, records: int, flush: float
) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=ds.topic.removesuffix(".lifecycle"),
        topic_partitions=len(ds.ends),
        clickhouse_url=f"chdb://{chdb}",
        clickhouse_database=f"bench_sink_{i}",
        analytics_group=f"{ds.topic}-sink-{i}-{uuid.uuid4().hex[:6]}",
        sink_batch_records=records,
        sink_flush_s=flush,
        worker_id="bench-sink",
    )


def report_run(f: dict[str, Any]) -> None:
    fl = f["flush"]
    ok = all(f["checks"].values())
    console.print(
        f"  → {f['rows_per_s']:,} rows/s ({f['rows_per_s_by_table']['job_events']:,} job_events +"
        f" {f['rows_per_s_by_table']['jobs']:,} jobs), {f['records_per_s']:,} records/s over"
        f" {f['active_s']:.1f}s (+{f['join_s']:.1f}s joining); {fl['count']} flushes, mean"
        f" {fl['mean_s']}s; cpu % {f['cpu_pct']['bench']:.0f} bench, {f['cpu_pct']['others']:.0f}"
        f" others; stored rows and dollars {'match' if ok else 'DIFFER: ' + str(f['checks'])}"
    )
    console.print(
        "    cpu % by thread: " + ", ".join(f"{k} {v}" for k, v in f["cpu_pct_by_thread"].items())
    )
    console.print("    wall s by step: " + ", ".join(f"{k} {v}" for k, v in f["steps_s"].items()))


async def run_all(
    bootstrap: str, cfg: Config, chdb: Path
) -> tuple[list[Dataset], list[dict[str, Any]], str]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    sets = await prepare(
        bootstrap,
        prefix,
        cfg.jobs,
        cfg.token_jobs,
        cfg.tokens_per_job,
        cfg.partitions,
        cfg.progress_s,
    )
    plan = [(sets[0], r, f) for r, f in cfg.grid]
    plan += [(ds, *cfg.grid[0]) for ds in sets[1:]]
    results, profile_text = [], ""
    for i, (ds, records, flush) in enumerate(plan):
        run = Run(ds, records, flush, settings_for(bootstrap, chdb, ds, i, records, flush))
        console.print(
            f"run {i + 1}/{len(plan)}: {ds.name}, sink_batch_records={records:,}"
            f" sink_flush_s={flush:g}; {ds.records:,} records → {ds.rows:,} rows"
        )
        profile: PySpy | cProfile.Profile | None = None
        if i == 0 and cfg.py_spy is not None:
            profile = PySpy(cfg.py_spy)
        elif i == 0 and cfg.cprofile:
            profile = cProfile.Profile()
        results.append(await run_sink(run, profile))
        report_run(results[-1])
        if isinstance(profile, PySpy):
            profile_text = profile.summary()
        elif isinstance(profile, cProfile.Profile):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
            profile_text = out.getvalue()
    return sets, results, profile_text


def table_rows(sets: list[Dataset], results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = [
        (
            f"produced: {ds.name}",
            f"{ds.records:,} records",
            f"{ds.jobs:,} jobs, {ds.rows:,} rows; {ds.records / ds.produce_s:,.0f} records/s",
        )
        for ds in sets
    ]
    best = max((f for f in results if f["dataset"] == sets[0].name), key=lambda f: f["rows_per_s"])
    for f in results:
        fl, t = f["flush"], f["rows_per_s_by_table"]
        mark = " (best)" if f is best else ""
        checks = "ok" if all(f["checks"].values()) else f["checks"]
        verdict = "meets" if f["rows_per_s"] >= TARGET_ROWS_PER_S else "MISSES"
        rows.append(
            (
                f"{f['dataset']}: batch {f['batch_records']:,}, flush {f['flush_s']:g}s{mark}",
                f"{f['rows_per_s']:,} rows/s",
                f"target ≥ {TARGET_ROWS_PER_S:,}: {verdict}; job_events {t['job_events']:,} +"
                f" jobs {t['jobs']:,}; {f['records_per_s']:,} records/s",
            )
        )
        rows.append(
            (
                "  time, flushes, CPU",
                f"{f['active_s']:.1f} s",
                f"+{f['join_s']:.1f}s group join; {fl['count']} flushes, mean {fl['mean_s']}s,"
                f" {fl['buckets']}; cpu % bench {f['cpu_pct']['bench']:.0f}, others"
                f" {f['cpu_pct']['others']:.0f}; checks {checks}",
            )
        )
        steps = ", ".join(f"{k} {v:.1f}" for k, v in f["steps_s"].items())
        steps += " (poll includes waiting: the group join, the tail)"
        rows.append(("  wall s by step (serial)", f"{sum(f['steps_s'].values()):.1f} s", steps))
    return rows


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    host = host_line()
    console.print(f"producer: {PRODUCER}; sink: services.analytics.sink.Sink in this process")
    with broker(Settings()) as bootstrap, fresh_chdb_dir(cfg.data_root, cfg.keep) as chdb:
        console.print(f"chDB in {chdb}")
        sets, results, profile_text = asyncio.run(run_all(bootstrap, cfg, chdb))
    host["loadavg_after"] = os.getloadavg()
    if profile_text:
        console.print(profile_text, markup=False, highlight=False)
    console.print(figures_table("analytics sink: Kafka → chDB", table_rows(sets, results)))
    console.print(
        f"load average before {host['loadavg_before'][0]:.2f}, after"
        f" {host['loadavg_after'][0]:.2f} ({host['cpus']} CPUs; other work skews every figure)"
    )
    line = {
        "bench": "analytics_sink",
        "machine": host,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "datasets": [
            {
                "name": ds.name,
                "topic": ds.topic,
                "jobs": ds.jobs,
                "records": ds.records,
                "rows": ds.rows,
                "produce_s": round(ds.produce_s, 2),
            }
            for ds in sets
        ],
        "runs": results,
    }
    print(orjson.dumps(line).decode())


if __name__ == "__main__":
    main()
