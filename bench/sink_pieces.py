"""The analytics sink's work per record, piece by piece, with no Kafka: where 100,000 rows/s goes.

``python -m bench.sink_pieces [--jobs N] [--rounds R]`` builds ``--jobs`` synthetic jobs'
lifecycle records (a ``queued``, ``started`` and ``completed`` each, as
``bench.analytics_events`` makes them for ``bench.analytics_sink``) in memory, then times, in
this process and on the sink's own functions, each step a batch takes:

- decode: ``rows.decode_lifecycle`` (the column-shaped pydantic check; ``orjson.loads`` of the
  same bytes is timed beside it, as the floor of any parse in Python);
- rows: ``event_row`` and ``job_row`` with the jobs' contexts, as ``Sink._rows`` does;
- transpose: ``Columns.data``, rows to the columns clickhouse-connect takes;
- insert: ``ClickHouse.insert`` into a fresh chDB database (``job_events``, then ``jobs``), each
  split into the engine's own time (``chdb`` query calls) and the driver's Python around it.

Each figure is the median over ``--rounds`` (the first insert round warms chDB up and is left
out). The garbage collector is set as in a served process (``settle_garbage_collector``), and
each round's objects are freed before the next. The sink's poll (librdkafka and a ``Record``
per message) is not here: see ``bench.analytics_sink``'s steps. One table and one JSON line at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

import orjson
from chdb.state.sqlitelike import Connection

from bench.analytics_common import console, figures_table, fresh_chdb_dir, host_line
from bench.analytics_events import job_events
from services.analytics.clickhouse import ClickHouse
from services.analytics.migrate import migrate
from services.analytics.rows import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    Columns,
    JobContext,
    decode_lifecycle,
    event_row,
    job_row,
)
from services.core.kafka import Record
from services.core.prices import load_prices
from services.core.settings import Settings
from services.serve import settle_garbage_collector

TARGET_ROWS_PER_S = 100_000
START_US = 1_765_000_000_000_000


def records(jobs: int) -> list[Record]:
    prices = load_prices(Settings().prices)
    out: list[Record] = []
    for i in range(jobs):
        for _, event in job_events(i, 0, START_US + i * 1000, prices):
            out.append(Record("lifecycle", i % 3, len(out), None, orjson.dumps(event), 0))
    return out


def rows(events: list[dict[str, Any]], recs: list[Record]) -> tuple[Columns, Columns]:
    """What ``Sink._rows`` does with a batch whose contexts it holds."""
    contexts: dict[str, JobContext] = {}
    ev_rows, job_rows = Columns(EVENT_COLUMNS), Columns(JOB_COLUMNS)
    for event, record in zip(events, recs, strict=True):
        ctx = contexts.get(event["job_id"])
        if event["type"] in ("queued", "started"):
            ctx = contexts.setdefault(event["job_id"], JobContext())
            ctx.learn(event)
        ev_rows.append(event_row(event, record, ctx))
        if event["type"] == "completed":
            job_rows.append(job_row(event, record, contexts.pop(event["job_id"])))
    return ev_rows, job_rows


class EngineClock:
    """Wall seconds spent inside chDB's query calls (the engine), counted while it is on."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._query = Connection.query

    def __enter__(self) -> EngineClock:
        original = self._query

        def timed(conn: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(conn, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        Connection.query = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Connection.query = self._query  # type: ignore[method-assign]


class Stopwatch:
    """Seconds of each named piece, one list entry per round."""

    def __init__(self) -> None:
        self.got: dict[str, list[float]] = {}
        self._t = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def stop(self, name: str) -> None:
        self.got.setdefault(name, []).append(time.perf_counter() - self._t)

    def add(self, name: str, seconds: float) -> None:
        self.got.setdefault(name, []).append(seconds)


async def insert_round(url: str, n: int, data: dict[str, list[list[Any]]], sw: Stopwatch) -> None:
    ch = await ClickHouse.open(url, f"pieces{n}")
    try:
        await migrate(ch)
        for table, names in (("job_events", EVENT_COLUMNS), ("jobs", JOB_COLUMNS)):
            with EngineClock() as engine:
                t = time.perf_counter()
                await ch.insert(table, names, data[table], f"{table}:{n}")
                wall = time.perf_counter() - t
            if n:  # round 0 warms the engine up
                sw.add(f"insert {table}: engine", engine.seconds)
                sw.add(f"insert {table}: driver", wall - engine.seconds)
    finally:
        await ch.command(f"DROP DATABASE IF EXISTS pieces{n}")
        await ch.close()


async def run(jobs: int, rounds: int, url: str) -> dict[str, Any]:
    recs = records(jobs)
    size = sum(len(r.value or b"") for r in recs) // len(recs)
    console.print(f"{len(recs):,} records of {jobs:,} jobs, {size} bytes each on average")
    sw = Stopwatch()
    for n in range(rounds + 1):
        sw.start()
        events = [decode_lifecycle(r) for r in recs]
        sw.stop("decode")
        sw.start()
        for r in recs:
            orjson.loads(r.value or b"")
        sw.stop("orjson.loads (floor)")
        sw.start()
        ev_rows, job_rows = rows([e for e in events if e is not None], recs)
        sw.stop("rows")
        sw.start()
        data = {"job_events": ev_rows.data, "jobs": job_rows.data}
        sw.stop("transpose")
        await insert_round(url, n, data, sw)
        del events, ev_rows, job_rows, data
        gc.collect()
        console.print(f"  round {n}/{rounds}: decode {sw.got['decode'][-1]:.2f}s")
    medians = {
        name: statistics.median(s[1:] if len(s) > rounds else s) for name, s in sw.got.items()
    }
    return {"records": len(recs), "rows": len(recs) + jobs, "seconds": medians}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sink_pieces", description=__doc__)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs of 3 records and 4 rows each")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up one")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    host = host_line()
    settle_garbage_collector()  # as the public face, which runs the sink, does
    with fresh_chdb_dir(None, False) as chdb_dir:
        result = asyncio.run(run(cfg.jobs, cfg.rounds, f"chdb://{chdb_dir}"))
    secs, n_rec, n_rows = result["seconds"], result["records"], result["rows"]
    pieces = [k for k in secs if k != "orjson.loads (floor)"]
    total = sum(secs[k] for k in pieces)
    table = [
        (name, f"{s:.2f} s", f"{1e6 * s / n_rec:.1f} µs per record") for name, s in secs.items()
    ]
    budget_us = 1e6 * n_rows / TARGET_ROWS_PER_S / n_rec
    table.append(
        (
            "all of the above but the floor",
            f"{total:.2f} s",
            f"{n_rows / total:,.0f} rows/s with no poll and nothing overlapping; target "
            f"{TARGET_ROWS_PER_S:,} rows/s leaves {budget_us:.1f} µs per record for everything",
        )
    )
    console.print(figures_table(f"the sink's pieces: {n_rec:,} records → {n_rows:,} rows", table))
    line = {
        "bench": "sink_pieces",
        "machine": host,
        **result,
        "rows_per_s_no_poll": round(n_rows / total),
    }
    print(orjson.dumps(line).decode())


if __name__ == "__main__":
    main()
