"""Job state: read latency under load, changelog records per job, recovery after kill -9.

``python -m bench.job_state`` (also part of ``make bench``). Uses the broker at
``TOKENRELAY_KAFKA_BOOTSTRAP`` when one answers there, else starts a throwaway
local broker. This process serves ingest, gateway and a worker (concurrency 32)
on one port; the aggregator (Faust) runs in a child process, so it can be
killed. Everything runs twice, once per state store: ``rocksdb://`` (the
default) and ``memory://`` (a restart replays the whole changelog). Per store:

* Reads under load, in two phases of 200 fake jobs each (200 tokens at 100
  tokens/s): in the first, 8 clients read ``GET /v1/jobs/{id}`` of random
  submitted jobs through the public face for 15 s; in the second, the same
  straight from the aggregator (``GET /jobs/{id}``), which separates the cost
  of the public face's proxying. Percentiles are of the 200 answers; every
  other answer is counted (a 404 is a job the aggregator has not reached yet).
  The aggregator's lag (events on the tokens topic past its committed offsets)
  is sampled each second.
* Changelog: records per job in ``<prefix>-aggregator-jobs-changelog``, read
  from offset 0 to the end once every job's final state is there; and how long
  after a job's terminal event its final state was written (broker timestamp
  of the record minus the event's ``ts``), i.e. how stale reads were.
* Recovery: kill -9 the aggregator, start it again on the same data dir and
  port; seconds until it answers HTTP, until ``/readyz`` is 200, and until a
  known job reads 200 (from the aggregator, then through the public face).
  The states read afterwards are compared with those read before the kill.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from bench.child import AggregatorChild
from bench.worker_scheduling import broker, console
from schemas.state import JobState
from services.core.kafka import Consumer
from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread

API_KEYS = "bench-admin:ops:admin,bench-alice:alice:user"
ALICE = {"Authorization": "Bearer bench-alice"}
JOBS, SUBMITTERS, READERS, READ_S = 200, 8, 8, 15.0
JOB = {"max_tokens": 200, "provider_options": {"tokens_per_s": 100}}
FINISH_TIMEOUT_S, CHANGELOG_TIMEOUT_S, RECOVERY_TIMEOUT_S = 300.0, 60.0, 180.0
POLL_S = 0.05


@dataclass
class Reads:
    """What one read phase saw: each answer's latency and status, and the aggregator's lag."""

    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    lag: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def not_ok(self) -> Counter[str]:
        return Counter(status for _, status in self.answers if status != "200") + self.failures

    def figures(self) -> dict[str, Any]:
        """Percentiles of the 200 answers; rates of all answers and of the 200s."""
        lat = sorted(ms for ms, status in self.answers if status == "200")
        q = statistics.quantiles(lat, n=100, method="inclusive")
        return {
            "ok": len(lat),
            "p50_ms": round(q[49], 2),
            "p90_ms": round(q[89], 2),
            "p99_ms": round(q[98], 2),
            "max_ms": round(lat[-1], 2),
            "ok_per_s": round(len(lat) / self.seconds, 1),
            "answers_per_s": round(len(self.answers) / self.seconds, 1),
            "not_200": dict(self.not_ok()),
            "aggregator_lag_max": max(self.lag, default=None),
        }


class Complaints(logging.Handler):
    """Counts this process's WARNING-and-worse log records (the public face and worker)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[f"{record.levelname} {record.name}: {record.getMessage()[:160]}"] += 1


# --- load and reads ---------------------------------------------------------------


async def submit(client: httpx.AsyncClient, i: int) -> str:
    r = await client.post("/v1/jobs", json={"prompt": f"bench {i}", **JOB}, headers=ALICE)
    r.raise_for_status()
    job_id: str = r.json()["job_id"]
    return job_id


async def reader(url: str, path: str, ids: list[str], until: float, out: Reads) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            job_id = random.choice(ids)
            t0 = time.perf_counter()
            try:
                r = await client.get(path.format(job_id), headers=ALICE)
            except httpx.HTTPError as exc:
                out.failures[type(exc).__name__] += 1
                continue
            out.answers.append(((time.perf_counter() - t0) * 1000, str(r.status_code)))


async def aggregator_lag(settings: Settings, c: Consumer) -> int:
    """Events on the tokens topic past the aggregator group's committed offsets (Faust commits
    each second, so this overstates the lag by up to a second of events)."""
    topic, parts = settings.topics.tokens, range(settings.topic_partitions)
    done = await c.committed([(topic, p) for p in parts])
    lag = 0
    for p in parts:
        end = (await c.watermarks(topic, p))[1]
        lag += end - (done[(topic, p)].offset or 0)
    return lag


async def ticker(
    settings: Settings, ids: list[str], out: Reads, start: float, until: float
) -> None:
    """Sample the aggregator's lag each second; show progress every five."""
    group = f"{settings.topic_prefix}-aggregator"  # Faust's group id is the app id
    async with Consumer(settings.kafka_bootstrap, group) as c:  # never subscribes: only looks
        n = 0
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            out.lag.append(await aggregator_lag(settings, c))
            n += 1
            if n % 5 == 0 or time.monotonic() >= until:
                bad = " ".join(f"{k}:{v}" for k, v in out.not_ok().items()) or "none"
                console.print(
                    f"  {time.monotonic() - start:4.1f}s submitted {len(ids)}/{JOBS}"
                    f" answers {len(out.answers)} (not 200: {bad}) agg lag {out.lag[-1]}"
                )


async def load_and_read(
    settings: Settings, base: str, url: str, path: str
) -> tuple[list[str], Reads]:
    """Submit ``JOBS`` jobs; meanwhile ``READERS`` clients read ``url + path`` for ``READ_S``."""
    ids: list[str] = []
    out = Reads()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        ids.append(await submit(client, 0))
        start = time.monotonic()
        until = start + READ_S

        async def submitter(k: int) -> None:
            for i in range(k, JOBS, SUBMITTERS):
                if i:
                    ids.append(await submit(client, i))

        await asyncio.gather(
            *(submitter(k) for k in range(SUBMITTERS)),
            *(reader(url, path, ids, until, out) for _ in range(READERS)),
            ticker(settings, ids, out, start, until),
        )
        out.seconds = time.monotonic() - start
    return ids, out


def load_figures(states: list[dict[str, Any]]) -> dict[str, Any]:
    """How long the phase's jobs took, from the first ``queued`` to the last end."""
    span_s = (max(s["finished_at"] for s in states) - min(s["queued_at"] for s in states)) / 1e6
    return {
        "span_s": round(span_s, 1),
        "tokens_per_s": round(sum(s["token_count"] for s in states) / span_s),
        "job_duration_p50_ms": round(statistics.median(s["duration_ms"] for s in states)),
        "queue_wait_p50_ms": round(statistics.median(s["queue_wait_ms"] for s in states)),
    }


async def final_states(url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every job's state from the aggregator, once all have finished (polled, with a deadline)."""
    states: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    shown = 0.0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            for job_id in [j for j in ids if states.get(j, {}).get("finished_at") is None]:
                r = await client.get(f"/jobs/{job_id}")
                if r.status_code == 200:
                    states[job_id] = r.json()
            done = sum(1 for s in states.values() if s["finished_at"] is not None)
            if done == len(ids):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done}/{len(ids)} jobs finished")
            if time.monotonic() - shown > 5:
                console.print(f"  finished {done}/{len(ids)}")
                shown = time.monotonic()
            await asyncio.sleep(0.5)


# --- changelog --------------------------------------------------------------------


def finished(raw: bytes) -> bool:
    return JobState.model_validate_json(raw).status.finished


@dataclass
class Changelog:
    """Records per key, and when (broker timestamp, ms) each job's first final state was written."""

    counts: Counter[str] = field(default_factory=Counter)
    final_ms: dict[str, int] = field(default_factory=dict)


async def changelog_records(settings: Settings, expected: set[str]) -> Changelog:
    """The jobs table's changelog from offset 0, read until every expected job is final."""
    topic = f"{settings.topic_prefix}-aggregator-jobs-changelog"
    parts = range(settings.topic_partitions)
    log = Changelog()
    deadline = time.monotonic() + CHANGELOG_TIMEOUT_S
    async with Consumer(settings.kafka_bootstrap, f"bench-{uuid.uuid4().hex}") as c:
        await c.assign([(topic, p, 0) for p in parts])
        while True:
            ends = {p: (await c.watermarks(topic, p))[1] for p in parts}
            while True:
                for rec in await c.poll(1000, 0.2):
                    key = (rec.key or b"").decode()
                    log.counts[key] += 1
                    if key not in log.final_ms and rec.value and finished(rec.value):
                        log.final_ms[key] = rec.timestamp_ms
                positions = {p: await c.position(topic, p) for p in parts}
                if all(positions[p] >= ends[p] for p in parts if ends[p] > 0):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog not read to {ends} (at {positions})")
            if expected <= log.final_ms.keys():
                return log
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(expected - log.final_ms.keys())} final states not in the changelog"
                )
            await asyncio.sleep(0.2)


def changelog_figures(log: Changelog, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Records per job; and how long after its terminal event a job's final state was stored."""
    per_job = [log.counts[j] for j in states]
    tokens = sum(s["token_count"] for s in states.values())
    delays = sorted(log.final_ms[j] - s["finished_at"] / 1000 for j, s in states.items())
    q = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "jobs": len(per_job),
        "min": min(per_job),
        "mean": round(statistics.fmean(per_job), 2),
        "max": max(per_job),
        "per_1000_tokens": round(sum(per_job) * 1000 / tokens, 2),
        "tokens": tokens,
        "other_keys": sum(v for k, v in log.counts.items() if k not in states),
        "final_state_delay_ms": {
            "p50": round(q[49]),
            "p90": round(q[89]),
            "max": round(delays[-1]),
        },
    }


# --- recovery ---------------------------------------------------------------------


def poll_200(url: str, headers: dict[str, str], started_at: float) -> tuple[float, Counter[str]]:
    """Seconds since ``started_at`` until GET ``url`` answers 200; the other answers seen."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        try:
            r = httpx.get(url, headers=headers, timeout=5)
            if r.status_code == 200:
                return time.perf_counter() - started_at, seen
            seen[str(r.status_code)] += 1
        except httpx.HTTPError as exc:
            seen[type(exc).__name__] += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not 200 after {RECOVERY_TIMEOUT_S:.0f}s: {dict(seen)}")
        time.sleep(POLL_S)


def recover(agg: AggregatorChild, base: str, before: dict[str, dict[str, Any]]) -> dict[str, Any]:
    job_id = random.choice(list(before))
    agg.kill()
    console.print("  aggregator killed (-9); starting it again on the same data dir and port")
    agg.start()
    up = agg.wait_ready(RECOVERY_TIMEOUT_S)
    read_s, agg_seen = poll_200(f"{agg.url}/jobs/{job_id}", {}, agg.started_at)
    public_s, public_seen = poll_200(f"{base}/v1/jobs/{job_id}", ALICE, agg.started_at)
    changed = sum(
        1
        for j, s in before.items()
        if orjson.loads(httpx.get(f"{agg.url}/jobs/{j}", timeout=10).content) != s
    )
    return {
        "web_up_s": round(up.web_s, 2),
        "ready_s": round(up.ready_s, 2),
        "job_read_s": round(read_s, 2),
        "public_read_s": round(public_s, 2),
        "readyz_503s": up.not_ready_answers,
        "other_answers": dict(agg_seen + public_seen),
        "states_changed": changed,
    }


# --- one store --------------------------------------------------------------------


def run_store(bootstrap: str, store: str, data: Path) -> dict[str, Any]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
        worker_group=f"bench-workers-{uuid.uuid4().hex[:8]}",
        worker_concurrency=32,
        api_keys=API_KEYS,  # type: ignore[arg-type]
        data_dir=data / "public",
        state_store=store,
        aggregator_port=port,
        aggregator_url=f"http://127.0.0.1:{port}",
    )
    console.rule(f"job state, store {store}, topics {settings.topic_prefix}.*")
    with AggregatorChild(settings, data / "aggregator", data / "aggregator.log") as agg:
        try:
            return measure(settings, agg, store)
        except Exception:
            console.print(f"aggregator log, last lines:\n{agg.tail()}", markup=False)
            raise


def measure(settings: Settings, agg: AggregatorChild, store: str) -> dict[str, Any]:
    """Reads under load, changelog records, then kill -9 and restart: one store's figures."""
    agg.start()
    up = agg.wait_ready()
    console.print(f"aggregator ready in {up.ready_s:.1f}s (first HTTP answer {up.web_s:.1f}s)")
    with serving_in_thread(settings, ["ingest", "gateway", "worker"], free_port()) as base:
        reads, states = {}, {}
        for name, url, path in (
            ("public", base, "/v1/jobs/{}"),
            ("direct", agg.url, "/jobs/{}"),
        ):
            console.print(f"{JOBS} jobs; {READERS} clients read {name} for {READ_S:.0f}s")
            ids, out = asyncio.run(load_and_read(settings, base, url, path))
            done = asyncio.run(final_states(agg.url, ids))
            reads[name] = out.figures() | {"load": load_figures(list(done.values()))}
            states |= done
        console.print("reading the changelog …")
        changelog = asyncio.run(changelog_records(settings, set(states)))
        recovery = recover(agg, base, states)
    return {
        "store": store,
        "reads": reads,
        "statuses": dict(Counter(s["status"] for s in states.values())),
        "changelog": changelog_figures(changelog, states),
        "recovery": recovery,
        "aggregator_log": dict(agg.complaints()),
    }


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right")
    for row in rows:
        t.add_row(*row)
    return t


def print_tables(runs: list[dict[str, Any]]) -> None:
    wide = Console(width=max(console.width, 132))
    read_rows = [
        [run["store"], name, str(r["ok"])]
        + [f"{r[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
        + [f"{r['ok_per_s']:.0f} / {r['answers_per_s']:.0f}"]
        + [", ".join(f"{k}: {v}" for k, v in r["not_200"].items()) or "0"]
        + [str(r["aggregator_lag_max"]), f"{r['load']['span_s']:.1f}"]
        for run in runs
        for name, r in run["reads"].items()
    ]
    cols = ["store", "path", "200s", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    cols += ["200/s / all/s", "not 200", "agg lag max", "load s"]
    title = f"GET job state, {READERS} clients for {READ_S:.0f}s while {JOBS} jobs stream"
    wide.print(table(title, cols, read_rows))
    rows = [
        [run["store"], str(c["min"]), f"{c['mean']:.2f}", str(c["max"])]
        + [f"{c['per_1000_tokens']:.2f}"]
        + [" / ".join(f"{c['final_state_delay_ms'][k] / 1000:.1f}" for k in ("p50", "max"))]
        + [f"{r[k]:.2f}" for k in ("web_up_s", "ready_s", "job_read_s", "public_read_s")]
        + [f"{r['states_changed']} / {c['jobs']}"]
        for run in runs
        for c, r in [(run["changelog"], run["recovery"])]
    ]
    cols = ["store", "min", "mean", "max", "per 1k tokens", "end→stored s p50/max"]
    cols += ["web up s", "ready s", "job read s", "public read s", "states changed"]
    wide.print(table("changelog records per job; restart after kill -9", cols, rows))


def print_complaints(runs: list[dict[str, Any]], public: Counter[str]) -> None:
    for run in runs:
        for line, n in run["aggregator_log"].items():
            console.print(f"aggregator log ({run['store']}) {n}x: {line}", markup=False)
    for line, n in public.items():
        console.print(f"public face log {n}x: {line}", markup=False)


def main() -> None:
    complaints = Complaints()
    logging.getLogger().addHandler(complaints)
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()  # the other work on this machine skews every figure
    try:
        with broker(Settings()) as bootstrap:
            for store in ("rocksdb://", "memory://"):
                with tempfile.TemporaryDirectory() as data:
                    runs.append(run_store(bootstrap, store, Path(data)))
    finally:
        logging.getLogger().removeHandler(complaints)
        print_complaints(runs, complaints.seen)
    print_tables(runs)
    figures = {"bench": "job_state", "cpus": os.cpu_count(), "runs": runs}
    figures["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    figures["public_face_log"] = dict(complaints.seen)
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
