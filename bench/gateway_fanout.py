"""Gateway fan-out: thousands of SSE streams on one gateway process, tokens at 10,000/s.

``python -m bench.gateway_fanout`` (also part of ``make bench``; ``--quick`` for a short smoke
run, ``--help`` for the knobs). Uses the broker at ``TOKENRELAY_KAFKA_BOOTSTRAP`` when one
answers there, else starts a throwaway local broker; fresh topics per run. Four processes
besides the broker:

* the gateway alone, ``tokenrelay serve gateway --port N``. No aggregator runs, so each
  stream finds its job's first event by a seek (as it does while job state is away);
* a synthetic worker (``bench.synthetic_worker``) that publishes well-formed events
  straight to the tokens topic with our ``Producer``, ``ts`` stamped at produce time;
* the SSE clients (``bench.sse_clients``), raw asyncio connections in one process or more;
* this one, which drives the others and samples ``/proc`` and the gateway's ``/metrics``.

Defaults: 200 active jobs x 50 tokens/s = 10,000 tokens/s, one stream each, plus 1,800
idle streams (one per job that was queued and emits nothing): 2,000 streams. Steps:

1. Every job is submitted (``queued``; the active ones also ``started``).
2. Memory: the gateway's VmRSS once ready, after ``--warmup-streams`` idle streams (which
   also fill the pool of replay readers) and after the other idle streams; KB per idle
   stream = the growth over those others / their number.
3. The active streams open and count as live once they have read ``started``.
4. The worker streams for ``--seconds``; every ``--progress-s`` a line with what was
   published and read, the interval's latency, CPU % and the gateway's consumer lag.
5. Figures: latency of every token (the client's clock when it parses the event minus
   the event's ``ts``), events/s delivered, CPU % of each process over the run (100 % =
   one core), and the gateway's ``/metrics`` at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from bench import sse_clients, synthetic_worker
from bench.processes import CpuMeter, Remote, ServiceChild, call_all, rss_kb
from bench.sse_clients import latencies_ms, summary
from bench.worker_scheduling import broker
from services.core.ids import new_job_id
from services.core.settings import Settings, child_env
from services.localdev.kafka import free_port

API_KEY = "bench-key"
M_OPEN, M_LAG = 'tokenrelay_streams_open{transport="sse"}', "tokenrelay_stream_consumer_lag"
M_CUT, M_SENT = "tokenrelay_stream_slow_clients_cut_total", "tokenrelay_stream_events_sent_total"
M_REPLAYS = "tokenrelay_stream_replay_reads_total"
M_GC = 'python_gc_collections_total{generation="%d"}'
FULL = {"active_jobs": 200, "idle_streams": 1800, "seconds": 30.0, "warmup_streams": 100}
QUICK = {"active_jobs": 20, "idle_streams": 180, "seconds": 5.0, "warmup_streams": 20}
IDLE_CPU_S = 3.0
console = Console(width=170)  # progress lines and the table stay one line each in a log


@dataclass(frozen=True)
class Config:
    active_jobs: int
    tokens_per_s: float
    idle_streams: int
    seconds: float
    warmup_streams: int
    client_procs: int
    open_concurrency: int
    progress_s: float
    partitions: int

    @property
    def tokens_per_job(self) -> int:
        return max(1, round(self.tokens_per_s * self.seconds))

    @property
    def rate(self) -> float:
        return self.active_jobs * self.tokens_per_s


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_fanout", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a short smoke run: 200 streams, 5 s")
    p.add_argument("--active-jobs", type=int, help="jobs that stream tokens, one stream each")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="per active job")
    p.add_argument("--idle-streams", type=int, help="streams of queued jobs that emit nothing")
    p.add_argument("--seconds", type=float, help="how long the active jobs stream")
    p.add_argument("--warmup-streams", type=int, help="idle streams opened before memory counts")
    p.add_argument("--client-procs", type=int, default=1, help="processes the streams share")
    p.add_argument("--open-concurrency", type=int, default=50, help="streams opening at once")
    p.add_argument("--progress-s", type=float, default=2.0, help="seconds between progress lines")
    p.add_argument("--partitions", type=int, default=3, help="partitions of the fresh topics")
    args = vars(p.parse_args(argv))
    preset = QUICK if args.pop("quick") else FULL
    values: dict[str, Any] = {k: preset[k] if v is None else v for k, v in args.items()}
    return Config(**values)


def code_version() -> str:
    """The commit measured, and whether the gateway's code differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False).stdout

    changed = git("status", "--porcelain", "services", "schemas").splitlines()
    return git("rev-parse", "--short", "HEAD").strip() + (
        f" + {len(changed)} uncommitted file(s) in services/, schemas/" if changed else ""
    )


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln), "?"
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
        "code": code_version(),
    }


def split(ids: list[str], parts: int) -> list[tuple[Any, ...]]:
    return [(ids[i::parts],) for i in range(parts)]


def open_streams(clients: list[Remote], ids: list[str], ready: str, cfg: Config) -> dict[str, Any]:
    """One stream per job, each open once it has read its ``ready`` event."""
    per = max(1, cfg.open_concurrency // len(clients))
    args = [(part, ready, per) for (part,) in split(ids, len(clients))]
    replies = call_all(clients, "open", args, timeout=600)
    opened = [ms for r in replies for ms in r["open_ms"]]
    seconds = max(r["seconds"] for r in replies)
    errors = {k: v for r in replies for k, v in r["errors"].items()}
    console.print(
        f"  {len(opened)}/{len(ids)} streams read {ready} in {seconds:.1f}s "
        f"({len(opened) / seconds:,.0f}/s); open p50 {summary(opened).get('p50', 0):.0f} ms"
        + (f"; errors {errors}" if errors else "")
    )
    return {
        "opened": len(opened),
        "failed": sum(r["failed"] for r in replies),
        "seconds": seconds,
        "open_ms": {k: round(v) for k, v in summary(opened).items()},
    }


def idle_memory(
    gateway: ServiceChild, clients: list[Remote], idle: list[str], cfg: Config
) -> dict[str, Any]:
    """The gateway's RSS before and after opening the idle streams; KB per stream."""
    ready_kb = rss_kb(gateway.pid)
    warm, rest = idle[: cfg.warmup_streams], idle[cfg.warmup_streams :]
    console.print(f"opening {len(warm)} idle streams (warm-up), then {len(rest)} more")
    opened = open_streams(clients, warm, "queued", cfg)
    time.sleep(1.0)
    warm_kb = rss_kb(gateway.pid)
    more = open_streams(clients, rest, "queued", cfg)
    time.sleep(1.0)
    after_kb = rss_kb(gateway.pid)
    console.print(
        f"  gateway RSS {ready_kb / 1024:.1f} → {warm_kb / 1024:.1f} → {after_kb / 1024:.1f} MB"
    )
    return {
        "rss_ready_mb": round(ready_kb / 1024, 1),
        "rss_warm_mb": round(warm_kb / 1024, 1),
        "rss_idle_mb": round(after_kb / 1024, 1),
        "kb_per_idle_stream": round((after_kb - warm_kb) / max(1, len(rest)), 1),
        "kb_per_idle_stream_incl_warmup": round((after_kb - ready_kb) / max(1, len(idle)), 1),
        "opened": opened["opened"] + more["opened"],
        "failed": opened["failed"] + more["failed"],
        "open_per_s": round(more["opened"] / more["seconds"]),
        "open_ms": more["open_ms"],
    }


def progress(
    gateway: ServiceChild, worker: Remote, clients: list[Remote], meter: CpuMeter, t0: float
) -> dict[str, Any]:
    """One progress line; what it showed."""
    pub = worker.call("stats")
    stats = call_all(clients, "stats", [()] * len(clients), timeout=30)
    metrics = gateway.metrics()
    cpu = meter.lap()
    recent = summary(latencies_ms([s["recent_us"] for s in stats]))
    sample = {
        "t": round(time.monotonic() - t0, 1),
        "published": pub["sent"],
        "tokens_read": sum(s["tokens"] for s in stats),
        "events_read": sum(s["events"] for s in stats),
        "lag": metrics.get(M_LAG, -1),
        "open": metrics.get(M_OPEN, -1),
        "cpu": {k: round(v) for k, v in cpu.items()},
        "done": pub["done"],
    }
    console.print(
        f"{sample['t']:5.1f}s sent {pub['sent']:>7,} read {sample['tokens_read']:>7,} tokens"
        f" | latency p50 {recent.get('p50', 0):6.1f} p99 {recent.get('p99', 0):6.1f}"
        f" max {recent.get('max', 0):6.1f} ms | cpu % gateway {cpu['gateway']:3.0f} clients"
        f" {cpu['clients']:3.0f} worker {cpu['worker']:3.0f} others {cpu['others']:3.0f}"
        f" | lag {sample['lag']:.0f} open {sample['open']:.0f}"
    )
    return sample


def stream_tokens(
    gateway: ServiceChild, worker: Remote, clients: list[Remote], active: list[str], cfg: Config
) -> dict[str, Any]:
    """Run the active jobs to their end; latency, rates, CPU and metrics over the run."""
    pids = {"gateway": [gateway.pid], "clients": [c.pid for c in clients], "worker": [worker.pid]}
    before = call_all(clients, "stats", [()] * len(clients), timeout=30)
    start = gateway.metrics()
    run_cpu, meter = CpuMeter(pids), CpuMeter(pids)
    console.print(
        f"streaming {cfg.active_jobs} jobs x {cfg.tokens_per_job} tokens at"
        f" {cfg.tokens_per_s:g} tokens/s each ({cfg.rate:,.0f} tokens/s in all)"
    )
    t0 = time.monotonic()
    worker.call("start", active, cfg.tokens_per_job, cfg.tokens_per_s)
    samples: list[dict[str, Any]] = []
    while not samples or not samples[-1]["done"]:
        time.sleep(cfg.progress_s)
        samples.append(progress(gateway, worker, clients, meter, t0))
    published = worker.call("wait", timeout=600)
    ended = call_all(clients, "wait_ended", [("started", 60.0)] * len(clients), timeout=120)
    seconds = time.monotonic() - t0
    cpu = run_cpu.lap()
    after = call_all(clients, "stats", [()] * len(clients), timeout=30)
    metrics = gateway.metrics()
    lat = latencies_ms([e["latencies_us"] for e in ended])
    events = sum(s["events"] for s in after) - sum(s["events"] for s in before)
    return {
        "seconds": round(seconds, 2),
        "published": published,
        "latency_ms": {k: round(v, 2) for k, v in summary(lat).items()},
        "tokens_expected": cfg.active_jobs * cfg.tokens_per_job,
        "tokens_read": len(lat),
        "streams_ended": sum(e["ended"] for e in ended),
        "gaps": sum(e["gaps"] for e in ended),
        "client_errors": {k: v for e in ended for k, v in e["errors"].items()},
        "events_per_s": round(events / seconds),
        "tokens_per_s_read": round(len(lat) / seconds),
        "cpu_pct": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_pct_max_interval": {
            k: max(s["cpu"].get(k, 0) for s in samples) for k in (*pids, "others", "machine")
        },
        "gateway_events_sent": metrics.get(M_SENT, 0) - start.get(M_SENT, 0),
        "gateway_gc_runs": [metrics.get(M_GC % g, 0) - start.get(M_GC % g, 0) for g in range(3)],
        "metrics": {
            "streams_open": metrics.get(M_OPEN),
            "streams_open_max_sampled": max(s["open"] for s in samples),
            "consumer_lag_last": metrics.get(M_LAG),
            "consumer_lag_max_sampled": max(s["lag"] for s in samples),
            "slow_clients_cut_total": metrics.get(M_CUT),
            "replay_reads_total": metrics.get(M_REPLAYS),
        },
        "samples": samples,
    }


def run(settings: Settings, gateway: ServiceChild, cfg: Config) -> dict[str, Any]:
    """Submit, open the streams, stream the tokens: every figure of one run."""
    startup_s = gateway.start()
    console.print(f"gateway ready in {startup_s:.1f}s (pid {gateway.pid}, {gateway.url})")
    idle = [new_job_id() for _ in range(cfg.idle_streams)]
    active = [new_job_id() for _ in range(cfg.active_jobs)]
    worker = Remote(
        "synthetic-worker", synthetic_worker.run, settings.kafka_bootstrap, settings.topics.tokens
    )
    host, port = "127.0.0.1", gateway.port
    clients = [
        Remote(f"sse-clients-{i}", sse_clients.run, host, port, API_KEY)
        for i in range(cfg.client_procs)
    ]
    try:
        sent = worker.call("submit", idle, active)
        console.print(f"submitted {len(idle) + len(active)} jobs ({sent} events)")
        memory = idle_memory(gateway, clients, idle, cfg)
        console.print(f"opening {len(active)} active streams")
        opened = open_streams(clients, active, "started", cfg)
        meter = CpuMeter({"gateway": [gateway.pid]})
        time.sleep(IDLE_CPU_S)
        quiet = meter.lap()
        console.print(f"gateway CPU with every stream open and no tokens: {quiet['gateway']:.0f}%")
        tokens = stream_tokens(gateway, worker, clients, active, cfg)
    finally:
        for remote in (*clients, worker):
            remote.stop()
    return {
        "gateway_startup_s": round(startup_s, 1),
        "streams": memory["opened"] + opened["opened"],
        "streams_failed": memory["failed"] + opened["failed"],
        "memory": memory,
        "gateway_cpu_pct_no_tokens": round(quiet["gateway"], 1),
        **tokens,
    }


def table(cfg: Config, f: dict[str, Any]) -> Table:
    lat, cpu, peak, m = f["latency_ms"], f["cpu_pct"], f["cpu_pct_max_interval"], f["metrics"]
    mem = f["memory"]
    rows = [
        (
            "SSE streams open on one gateway",
            f"{f['streams']:,} ({f['streams_failed']} failed)",
            f"{cfg.active_jobs} active + {cfg.idle_streams} idle",
        ),
        (
            "tokens/s published (synthetic worker)",
            f"{cfg.rate:,.0f} target",
            f"behind schedule at most {f['published']['behind_max_ms']} ms",
        ),
        (
            "publish → client read p50 / p90 / p99",
            " / ".join(f"{lat[k]:.1f}" for k in ("p50", "p90", "p99")) + " ms",
            f"n = {lat['n']:,}",
        ),
        ("  p99.9 / max", f"{lat['p99.9']:.1f} / {lat['max']:.1f} ms", ""),
        (
            "tokens read / expected, gaps",
            f"{f['tokens_read']:,} / {f['tokens_expected']:,}, {f['gaps']}",
            f"{f['streams_ended']}/{cfg.active_jobs} streams ended",
        ),
        (
            "events/s delivered to clients",
            f"{f['events_per_s']:,}",
            f"over {f['seconds']:.1f}s; the gateway counted {f['gateway_events_sent']:,.0f} sent",
        ),
        *(
            (f"{name} CPU % (run / worst interval)", f"{cpu[name]:.0f} / {peak[name]}", note)
            for name, note in (
                (
                    "gateway",
                    f"100 % = one core; {f['gateway_cpu_pct_no_tokens']:.0f} % with no tokens",
                ),
                ("clients", f"{cfg.client_procs} process(es)"),
                ("worker", ""),
                ("others", "the broker and whatever else runs"),
                ("machine", f"busy % of all {os.cpu_count()} CPUs"),
            )
        ),
        (
            "gateway RSS ready → warm → idle streams",
            f"{mem['rss_ready_mb']} → {mem['rss_warm_mb']} → {mem['rss_idle_mb']} MB",
            "",
        ),
        (
            "memory per idle stream",
            f"{mem['kb_per_idle_stream']} KB",
            f"{mem['kb_per_idle_stream_incl_warmup']} KB incl. warm-up"
            + ("; too few streams for a steady figure" if cfg.idle_streams < 1000 else ""),
        ),
        (
            "idle streams opened per second",
            f"{mem['open_per_s']:,}",
            "first event after p50 {p50:.0f}, p99 {p99:.0f} ms".format(**mem["open_ms"]),
        ),
        (
            "streams_open during / after the run",
            f"{m['streams_open_max_sampled']:.0f} / {m['streams_open']:.0f}",
            "the gateway's metric; the idle streams stay open",
        ),
        (
            "stream_consumer_lag last / max sampled",
            f"{m['consumer_lag_last']:.0f} / {m['consumer_lag_max_sampled']:.0f}",
            "",
        ),
        ("stream_slow_clients_cut_total", f"{m['slow_clients_cut_total']:.0f}", ""),
        ("stream_replay_reads_total", f"{m['replay_reads_total']:.0f}", ""),
        (
            "gateway GC runs during the run, gen 0/1/2",
            " / ".join(f"{n:.0f}" for n in f["gateway_gc_runs"]),
            "python_gc_collections_total; a gen-2 run stops the event loop",
        ),
    ]
    t = Table(title=f"gateway fan-out: {f['streams']:,} SSE streams, {cfg.rate:,.0f} tokens/s")
    for col, justify in (("figure", "left"), ("value", "right"), ("note", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        t.add_row(*row)
    return t


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    host = machine()
    console.print(
        f"machine: {host['cpus']} x {host['cpu']}, {host['mem_gb']} GB, Linux {host['kernel']},"
        f" Python {host['python']}; load {host['loadavg_before'][0]:.2f}; code {host['code']}"
    )
    console.print(f"producer: {synthetic_worker.PRODUCER}; clients: raw asyncio SSE on uvloop")
    with broker(Settings()) as bootstrap, tempfile.TemporaryDirectory() as data:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            topic_partitions=cfg.partitions,
            api_keys=f"{API_KEY}:{synthetic_worker.TENANT}:user",  # type: ignore[arg-type]
            aggregator_url=f"http://127.0.0.1:{free_port()}",  # nobody there: streams seek
        )
        env = {"TOKENRELAY_DATA_DIR": data, **child_env(settings)}
        gateway = ServiceChild(["gateway"], free_port(), env, Path(data) / "gateway.log")
        console.print(
            f"gateway: buffer {settings.stream_buffer_events} events/stream, heartbeat"
            f" {settings.stream_heartbeat_s:g}s, {settings.stream_replay_readers} replay readers;"
            f" topics {settings.topic_prefix}.* ({cfg.partitions} partitions); no aggregator"
        )
        try:
            figures = run(settings, gateway, cfg)
        finally:
            gateway.stop()
            for line, n in gateway.complaints().items():
                console.print(f"gateway log {n}x: {line}", markup=False)
    host["loadavg_after"] = os.getloadavg()
    console.print(table(cfg, figures))
    out = {"bench": "gateway_fanout", "config": cfg.__dict__, "machine": host, **figures}
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
