"""``tokenrelay bench soak --minutes N``: the whole stack under a steady load; does anything grow?

The stack is our own, as ``make up`` runs it: a throwaway broker, the public face
(ingest, gateway, analytics), a worker and the aggregator, each a child process
with the fake provider. The load keeps ``concurrent`` jobs running, each of
``tokens`` tokens at ``tokens_per_s``, each watched over SSE from submission to
its end; a finished job is replaced at once. Jobs cycle through ``MIX`` (every
priority, a cancel, a retry that then succeeds, a failure) and a batch goes in
each minute; a job or batch that does not end as its kind must counts as
``wrong``. Every ``sample_s`` the resident
memory of each process is read from ``/proc``; per minute, the tokens received
and the p99 of a token's latency (its arrival at the watcher minus its event's
``ts``). At the end: each process's RSS slope (MB/min, least squares over the
samples after the first minute, or after the first sample in a one-minute run)
and the slope of the per-minute p99 (ms/min). A leak shows as a slope that does
not fall toward zero as the run gets longer.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import report
from bench.processes import ServiceChild, rss_kb
from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.settings import Settings
from services.localdev.kafka import free_port, throwaway_broker

API_KEY = "soak-key"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 60.0
    concurrent: int = 8
    tokens: int = 200
    tokens_per_s: float = 50.0
    sample_s: float = 10.0


@dataclass(frozen=True)
class Kind:
    """One sort of job in the mix: what it asks of the fake provider and how it must end."""

    name: str
    priority: str
    ends: str
    """The job's terminal event type."""
    options: dict[str, Any] = field(default_factory=dict)
    cancel_after: int | None = None
    """Tokens watched before the watcher cancels the job."""


MIX = (
    Kind("urgent", "urgent", "completed"),
    Kind("high", "high", "completed"),
    Kind("normal", "normal", "completed"),
    Kind("low", "low", "completed"),
    Kind("cancel", "normal", "cancelled", cancel_after=20),
    Kind("high", "high", "completed"),
    Kind(
        "retry",
        "normal",
        "completed",
        {"fail_with": "provider", "fail_after": 10, "fail_attempts": 1},
    ),
    Kind("normal", "normal", "completed"),
    Kind("fail", "high", "failed", {"fail_with": "auth", "fail_after": 10}),
    Kind("low", "low", "completed"),
)
"""Cycled through by every job loop: all four priorities, a cancel, a retry that then
succeeds, a failure. Besides, a batch of ``BATCH_JOBS`` goes in each minute."""
BATCH_JOBS = 10
BATCH_DEADLINE_S = 120.0


@dataclass
class Minute:
    latencies_ms: list[float] = field(default_factory=list)
    jobs: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    """Jobs by the kind that ended as it should."""
    wrong: int = 0
    """Jobs that ended otherwise than their kind must (or never, within the stream's timeout)."""
    batches: int = 0
    errors: int = 0


def this_minute(minutes: list[Minute], started: float) -> Minute:
    """The bucket of the minute now running (the last one past the end)."""
    return minutes[min(int((time.monotonic() - started) // 60), len(minutes) - 1)]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope


def p99(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@contextmanager
def soak_stack(data: Path) -> Iterator[dict[str, int]]:
    """Broker + public + worker + aggregator; yields the base URL's port and every pid."""
    with ExitStack() as stack:
        broker = throwaway_broker(data / "kafka", Settings())
        broker.start()
        stack.callback(broker.stop)
        tag = uuid.uuid4().hex[:8]
        agg_port = free_port()
        env = {
            "TOKENRELAY_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TOKENRELAY_TOPIC_PREFIX": f"soak{tag}",
            "TOKENRELAY_API_KEYS": f"{API_KEY}:soak:admin",
            "TOKENRELAY_DATA_DIR": str(data),
            "TOKENRELAY_LOG_LEVEL": "WARNING",
            "TOKENRELAY_AGGREGATOR_PORT": str(agg_port),
            "TOKENRELAY_AGGREGATOR_URL": f"http://127.0.0.1:{agg_port}",
            "TOKENRELAY_WORKER_GRACE_S": "1",
        }
        children = {
            "aggregator": ServiceChild(
                ["aggregator"], agg_port, env, data / "aggregator.log", command=["aggregator"]
            ),
            "worker": ServiceChild(["worker"], free_port(), env, data / "worker.log"),
            "public": ServiceChild(
                ["ingest", "gateway", "analytics"], free_port(), env, data / "public.log"
            ),
        }
        for child in children.values():
            stack.callback(child.stop)
            child.start()
        pids = {name: child.pid for name, child in children.items()}
        yield {"port": children["public"].port, **pids, "kafka": broker.running_pid() or 0}


def job_body(kind: Kind, opts: SoakOptions) -> dict[str, Any]:
    return {
        "prompt": f"soak {kind.name}",
        "max_tokens": opts.tokens,
        "priority": kind.priority,
        "max_attempts": 2,
        "provider_options": {"tokens_per_s": opts.tokens_per_s, **kind.options},
    }


async def watch(
    client: httpx.AsyncClient, job_id: str, kind: Kind, started: float, minutes: list[Minute]
) -> str | None:
    """Time every token of the job's stream; cancel it on cue; the terminal type it ended with."""
    tokens = 0
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=HEADERS) as resp:
        resp.raise_for_status()
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token":
                ts = orjson.loads(line[6:])["ts"]
                now_ms = time.time() * 1000
                this_minute(minutes, started).latencies_ms.append(now_ms - ts / 1000)
                tokens += 1
                if tokens == kind.cancel_after:
                    r = await client.post(f"/v1/jobs/{job_id}/cancel", headers=HEADERS)
                    r.raise_for_status()
            elif line.startswith("data: ") and event in TERMINAL_EVENT_TYPES:
                return event
    return None


async def _job_loop(
    client: httpx.AsyncClient, opts: SoakOptions, started: float, minutes: list[Minute], first: int
) -> None:
    end = started + opts.minutes * 60
    n = first
    while time.monotonic() < end:
        kind = MIX[n % len(MIX)]
        n += 1
        try:
            r = await client.post("/v1/jobs", json=job_body(kind, opts), headers=HEADERS)
            r.raise_for_status()
            ended = await watch(client, r.json()["job_id"], kind, started, minutes)
            bucket = this_minute(minutes, started)
            bucket.jobs += 1
            if ended == kind.ends:
                bucket.ended[kind.name] = bucket.ended.get(kind.name, 0) + 1
            else:
                bucket.wrong += 1
        except (httpx.HTTPError, KeyError, ValueError):
            this_minute(minutes, started).errors += 1
            await asyncio.sleep(1.0)


async def _batch_loop(
    client: httpx.AsyncClient, opts: SoakOptions, started: float, minutes: list[Minute]
) -> None:
    """A batch of short low jobs at the start of each minute, followed until every job succeeded."""
    body = {
        "jobs": [
            {"prompt": f"soak batch {k}", "max_tokens": 20, "priority": "low"}
            for k in range(BATCH_JOBS)
        ]
    }
    for minute in range(len(minutes)):
        await asyncio.sleep(max(0.0, started + minute * 60 - time.monotonic()))
        if time.monotonic() >= started + opts.minutes * 60:
            return
        try:
            r = await client.post("/v1/batches", json=body, headers=HEADERS)
            r.raise_for_status()
            batch = f"/v1/batches/{r.json()['batch_id']}"
            deadline = time.monotonic() + BATCH_DEADLINE_S
            while True:
                state = (await client.get(batch, headers=HEADERS)).json()
                if state.get("counts", {}).get("succeeded") == BATCH_JOBS:
                    this_minute(minutes, started).batches += 1
                    break
                if time.monotonic() > deadline:
                    this_minute(minutes, started).wrong += 1
                    break
                await asyncio.sleep(1.0)
        except (httpx.HTTPError, KeyError, ValueError):
            this_minute(minutes, started).errors += 1


async def _sample(
    pids: dict[str, int], opts: SoakOptions, started: float, samples: list[dict[str, Any]]
) -> None:
    end = started + opts.minutes * 60
    while True:
        at = time.monotonic() - started
        samples.append(
            {"t_min": round(at / 60, 3)} | {n: round(rss_kb(p) / 1024, 1) for n, p in pids.items()}
        )
        if time.monotonic() >= end:
            return
        await asyncio.sleep(min(opts.sample_s, max(0.0, end - time.monotonic())))


def summarize(
    opts: SoakOptions, samples: list[dict[str, Any]], minutes: list[Minute], parts: list[str]
) -> dict[str, Any]:
    warm = 1.0 if opts.minutes > 1 else 0.0
    later = [s for s in samples if s["t_min"] > warm] or samples[1:]
    rss_slopes = {n: slope([(s["t_min"], s[n]) for s in later]) for n in parts}
    rows = []
    for i, m in enumerate(minutes):
        at_end = [s for s in samples if s["t_min"] <= i + 1][-1]
        rows.append(
            {
                "minute": i + 1,
                "jobs": m.jobs,
                "ended": dict(sorted(m.ended.items())),
                "batches": m.batches,
                "wrong": m.wrong,
                "tokens": len(m.latencies_ms),
                "errors": m.errors,
                "p99_token_latency_ms": round(v, 1) if (v := p99(m.latencies_ms)) else None,
                "rss_mb": {n: at_end[n] for n in parts},
            }
        )
    p99s = [(r["minute"], r["p99_token_latency_ms"]) for r in rows if r["p99_token_latency_ms"]]
    drift = slope(p99s)
    return {
        "scenario": "soak",
        "options": opts.__dict__,
        "minutes": rows,
        "rss_slope_mb_per_min": {
            n: round(v, 3) if v is not None else None for n, v in rss_slopes.items()
        },
        "p99_slope_ms_per_min": round(drift, 3) if drift is not None else None,
        "errors": sum(m.errors for m in minutes),
        "wrong": sum(m.wrong for m in minutes),
        "machine": report.machine(),
    }


def run(opts: SoakOptions, progress: Callable[[float, str], None]) -> dict[str, Any]:
    """The soak's figures; ``progress(fraction done, what)`` is called every second or so."""
    with tempfile.TemporaryDirectory(prefix="tr-soak-") as tmp, soak_stack(Path(tmp)) as info:
        pids = {n: p for n, p in info.items() if n != "port"}
        minutes = [Minute() for _ in range(max(1, int(-(-opts.minutes // 1))))]
        samples: list[dict[str, Any]] = []

        async def main() -> None:
            started = time.monotonic()
            limits = httpx.Limits(max_connections=opts.concurrent * 2 + 4)
            base = f"http://127.0.0.1:{info['port']}"
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                work = [
                    asyncio.create_task(_job_loop(client, opts, started, minutes, first=k))
                    for k in range(opts.concurrent)
                ]
                work.append(asyncio.create_task(_batch_loop(client, opts, started, minutes)))
                sampler = asyncio.create_task(_sample(pids, opts, started, samples))
                while not all(t.done() for t in work):
                    done = min(1.0, (time.monotonic() - started) / (opts.minutes * 60))
                    m = this_minute(minutes, started)
                    progress(done, f"{m.jobs} jobs, {len(m.latencies_ms)} tokens this minute")
                    await asyncio.wait(work, timeout=1.0)
                await asyncio.gather(*work)
                await sampler

        asyncio.run(main())
        return summarize(opts, samples, minutes, list(pids))


def table(result: dict[str, Any]) -> Any:
    """The per-minute figures and the slopes, as a rich table."""
    from rich.table import Table  # noqa: PLC0415

    parts = list(result["rss_slope_mb_per_min"])
    t = Table(title="soak: per minute", show_lines=False)
    heads = ["minute", "jobs", "batches", "wrong", "tokens", "errors", "p99 token ms"]
    for col in [*heads, *[f"{p} MB" for p in parts]]:
        t.add_column(col, justify="right")
    for r in result["minutes"]:
        t.add_row(
            str(r["minute"]),
            str(r["jobs"]),
            str(r["batches"]),
            str(r["wrong"]),
            str(r["tokens"]),
            str(r["errors"]),
            str(r["p99_token_latency_ms"]),
            *[str(r["rss_mb"][p]) for p in parts],
        )
    slopes = result["rss_slope_mb_per_min"]
    drift = str(result["p99_slope_ms_per_min"])
    t.add_row("slope/min", "", "", "", "", "", drift, *[str(slopes[p]) for p in parts])
    return t
