"""The scenarios: what load each one offers, to tokenrelay and then to the baseline, and how
the watchers' raw figures become the report.

Each load runs in a fresh ``bench.harness.watch`` child process; this process only
starts it, polls its progress into the progress bar (with a deadline), and collects.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import httpx

from bench.harness import baseline as baseline_server
from bench.harness import report, watch
from bench.harness.stack import Stack, own_stack, stack_for
from bench.processes import Remote, cpu_s, machine_busy_s, rss_kb
from services.localdev.kafka import free_port

POLL_S = 0.2
Progress = Callable[[str, int, int], None]
"""``progress(label, done, total)``: how far the current load got."""


@dataclass(frozen=True)
class Options:
    """The load; ``None`` fields take the scenario's default (``DEFAULTS``)."""

    jobs: int | None = None
    max_tokens: int | None = None
    tokens_per_s: float | None = None
    idle: int | None = None
    urgent: int | None = None
    batch_size: int | None = None
    connections: int = 64
    timeout_s: float = 600.0
    baseline: bool = True
    provider: str = "fake"
    """``fake`` (in the worker) or ``openai`` (the SDK against the bench's own upstream)."""
    freshness: bool = False
    """The whole stack (aggregator, analytics sink): how long after a job's stream ended
    its state reads final and its analytics row lands."""
    submit_stream: bool = False
    """Each watched job is submitted with ``Accept: text/event-stream`` and read from that
    answer, not submitted and then watched in a second request."""


DEFAULTS: dict[str, Options] = {
    "steady": Options(jobs=100, max_tokens=1000, tokens_per_s=50),
    "max": Options(jobs=20, max_tokens=10_000, tokens_per_s=0),
    "ingest": Options(jobs=5000, max_tokens=1, tokens_per_s=0),
    "batch": Options(jobs=20_000, max_tokens=1, tokens_per_s=0, batch_size=1000),
    "fanout": Options(jobs=20, max_tokens=500, tokens_per_s=50, idle=1000),
    "priority": Options(jobs=400, max_tokens=20, tokens_per_s=50, urgent=20),
}
SCENARIOS = tuple(DEFAULTS)
FRESH_BATCH_JOBS = 20
FRESH_BATCH_TOKENS = 100
"""With ``freshness``, one batch of this many jobs (at most) of this many tokens (at most)
runs beside the load, watched, so that its progress's trail is timed."""
PRIORITY_CONCURRENCY = 16
URGENT_INTERVAL_S = 0.25


def resolve(scenario: str, given: Options) -> Options:
    """``given`` with each unset field taken from the scenario's defaults."""
    base = DEFAULTS[scenario]
    fields = {k: v for k, v in vars(given).items() if v is not None}
    return replace(base, **fields)


PROVIDERS = ("fake", "openai")
OPENAI_MODEL = "gpt-4o-mini"
"""A priced model, so the openai path's jobs cost what a real one's would to account."""


def job_body(
    tokens: int, tokens_per_s: float, priority: str = "normal", provider: str = "fake"
) -> dict[str, Any]:
    model = {"model": OPENAI_MODEL} if provider == "openai" else {}
    return {
        "provider": provider,
        **model,
        "priority": priority,
        "max_tokens": tokens,
        "provider_options": {"tokens_per_s": tokens_per_s},
    }


# --- one load ---------------------------------------------------------------------


def run_load(
    target: dict[str, Any],
    spec: dict[str, Any],
    total: int,
    label: str,
    progress: Progress,
    not_ours: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Run one load in a fresh watcher process; its raw figures once every stream ended.

    ``total`` is what the progress counts to: tokens, or submissions when nothing is watched.
    ``cpu_s`` in the result is the CPU the whole machine spent meanwhile, less the
    watcher's and that of ``not_ours`` (the upstream): the stack's and the broker's.
    """
    remote = Remote(f"watch-{label}", watch.run)
    outside = (remote.pid, *not_ours)
    try:
        busy_before, _ = machine_busy_s()
        outside_before = sum(cpu_s(pid) for pid in outside)
        started = time.monotonic()
        remote.call("start", {**target, **spec})
        deadline = time.monotonic() + spec["timeout_s"]
        counted = "tokens" if spec["watching"] else "accepted"
        while True:
            stats = remote.call("stats")
            progress(label, stats[counted], total)
            if stats["done"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: not done after {spec['timeout_s']:.0f} s: {stats}")
            time.sleep(POLL_S)
        spent = machine_busy_s()[0] - busy_before
        spent -= sum(cpu_s(pid) for pid in outside) - outside_before
        wall_s = time.monotonic() - started
        return {**remote.call("result", 30.0), "cpu_s": spent, "cpu_wall_s": wall_s}
    finally:
        remote.stop()


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """The report's figures from a load's raw ones (see ``watch.Load.result``)."""
    us = array("q")
    us.frombytes(raw["latencies_us"])
    window_s = (raw["last_token_us"] - raw["first_token_us"]) / 1e6
    duration_s = (raw["ended_us"] - raw["began_us"]) / 1e6
    out: dict[str, Any] = {
        "jobs": raw["jobs"] or raw["accepted"],
        "tokens": raw["tokens"],
        "duration_s": round(duration_s, 3),
        "tokens_per_s": report.rate(raw["tokens"], window_s),
        "token_latency_ms": report.summarize([v / 1000 for v in us]),
        "token_latency_settled_ms": _settled(us, raw),
        "submit_to_first_token_ms": report.summarize(raw["first_token_ms"]),
    }
    if raw["submit_ms"]:
        out["submit_ms"] = report.summarize(raw["submit_ms"])
    if raw["stream_open_ms"]:
        out["stream_open_ms"] = report.summarize(raw["stream_open_ms"])
    if raw["errors"]:
        out["errors"] = raw["errors"]
    if raw["tokens"]:
        out["cpu_ms_per_token"] = round(1000 * raw["cpu_s"] / raw["tokens"], 4)
        wall = raw.get("cpu_wall_s") or duration_s
        out["cores_busy"] = round(raw["cpu_s"] / wall, 2) if wall else None
    return out


def _settled(latencies_us: array[int], raw: dict[str, Any]) -> dict[str, float] | None:
    """The latencies of the tokens that arrived once every watched stream had its first."""
    arrivals = array("q")
    arrivals.frombytes(raw.get("arrivals_us", b""))
    since = raw.get("all_open_us", 0)
    if len(arrivals) != len(latencies_us) or not since:
        return None
    late = [lat / 1000 for lat, at in zip(latencies_us, arrivals, strict=True) if at > since]
    return report.summarize(late) if late else None


WARMUP_JOBS = 200
WARMUP_TOKENS_PER_S = 50.0


def warm_up(bootstrap: str, seconds: float, progress: Progress) -> None:
    """``WARMUP_JOBS`` streams at ``WARMUP_TOKENS_PER_S`` for ``seconds`` on a stack of their
    own, unmeasured, before a run's first scenario.

    A broker's JVM compiles its hot paths (produce, fetch, transactions) in its first tens
    of seconds under load, at up to half a core and with slower code until then; a fresh
    throwaway broker measured at once gave `steady --jobs 200` a p99 three to five times
    that of the same broker warm. A deployment's broker is warm.
    """
    tokens = max(1, round(seconds * WARMUP_TOKENS_PER_S))
    group = {"name": "warm-up", "count": WARMUP_JOBS, "body": job_body(tokens, WARMUP_TOKENS_PER_S)}
    spec = Runner._stream_spec(Options(timeout_s=seconds + 120.0), [group])
    with own_stack(bootstrap, WARMUP_JOBS + 8) as stack:
        target = {"host": stack.host, "port": stack.port, "api_key": stack.api_key}
        run_load({**target, "baseline": False}, spec, WARMUP_JOBS * tokens, "warm-up", progress)


class Runner:
    """Runs scenarios against one stack (or, without ``--url``, a fresh stack each on the
    run's broker at ``bootstrap``)."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        progress: Progress,
        bootstrap: str | None = None,
    ) -> None:
        self.url, self.api_key, self.progress = url, api_key, progress
        self.bootstrap = bootstrap
        self._not_ours: tuple[int, ...] = ()

    def run(self, scenario: str, given: Options) -> dict[str, Any]:
        opts = resolve(scenario, given)
        if opts.provider not in PROVIDERS:
            raise ValueError(f"provider is one of {', '.join(PROVIDERS)}; got {opts.provider}")
        if opts.provider == "openai" and self.url:
            raise ValueError("--provider openai runs against the bench's own stack (no --url)")
        method = getattr(self, f"_{scenario}")
        with ExitStack() as cleanup:
            # The upstream first: the stack's worker is pointed at it.
            server = self._baseline(cleanup)
            upstream = f"http://127.0.0.1:{server['port']}/v1"
            stack = cleanup.enter_context(
                stack_for(
                    self.url,
                    self.api_key,
                    self.bootstrap,
                    self._concurrency(scenario, opts),
                    upstream if opts.provider == "openai" else None,
                    opts.freshness,
                )
            )
            self._not_ours = (server["pid"],)
            base = server if opts.baseline else None
            result: dict[str, Any] = method(stack, base, opts)
        result["scenario"] = scenario
        result["provider"] = opts.provider
        return result

    @staticmethod
    def _concurrency(scenario: str, opts: Options) -> int:
        """Slots for every watched job at once, except where saturation is the point."""
        if scenario == "priority":
            return PRIORITY_CONCURRENCY
        if scenario in ("ingest", "batch"):
            return 64
        return (opts.jobs or 0) + (opts.idle or 0) + 8

    @staticmethod
    def _baseline(cleanup: ExitStack) -> dict[str, Any]:
        port = free_port()
        server = Remote("baseline", baseline_server.run, port)
        cleanup.callback(server.stop)
        server.call("ready")
        return {
            "host": "127.0.0.1",
            "port": port,
            "api_key": None,
            "baseline": True,
            "pid": server.pid,
        }

    def _both(
        self,
        stack: Stack,
        base: dict[str, Any] | None,
        spec: dict[str, Any],
        total: int,
        base_spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The load on tokenrelay, then the same on the baseline; the report's figures."""
        ours = {"host": stack.host, "port": stack.port, "api_key": stack.api_key}
        raw = run_load(
            {**ours, "baseline": False}, spec, total, "tokenrelay", self.progress, self._not_ours
        )
        result = figures(raw)
        for lag in ("state_lag_ms", "analytics_lag_ms", "batch_lag_ms", "queues_lag_ms"):
            if raw.get(lag):
                result[lag] = report.summarize(raw[lag])
        result["queue_wait_ms"] = {
            name: report.summarize(waits) for name, waits in raw["queue_wait_ms"].items()
        }
        result["idle_open"] = raw["idle_open"]
        if base is not None:
            target = {k: v for k, v in base.items() if k != "pid"}
            plain = {**(base_spec or spec), "freshness": False}  # no state without a log
            base_raw = run_load(target, plain, total, "baseline", self.progress)
            result["baseline"] = figures(base_raw)
        return result

    @staticmethod
    def _stream_spec(opts: Options, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "groups": groups,
            "connections": opts.connections,
            "timeout_s": opts.timeout_s,
            "watching": True,
            "freshness": opts.freshness,
            "submit_stream": opts.submit_stream,
        }

    def _steady(self, stack: Stack, base: dict[str, Any] | None, o: Options) -> dict[str, Any]:
        assert o.jobs is not None and o.max_tokens is not None and o.tokens_per_s is not None
        group = {
            "name": "job",
            "count": o.jobs,
            "body": job_body(o.max_tokens, o.tokens_per_s, provider=o.provider),
        }
        spec = self._stream_spec(o, [group])
        if o.freshness:  # and how far batch progress and the queues trail the streams
            batch = job_body(
                min(o.max_tokens, FRESH_BATCH_TOKENS), o.tokens_per_s, provider=o.provider
            )
            spec["groups"].append(
                {"name": watch.FRESH_BATCH, "count": min(o.jobs, FRESH_BATCH_JOBS), "body": batch}
            )
            spec["trails"] = True
        out = self._both(stack, base, spec, o.jobs * o.max_tokens)
        out["offered_tokens_per_s"] = o.jobs * o.tokens_per_s
        return out

    _max = _steady

    def _ingest(self, stack: Stack, base: dict[str, Any] | None, o: Options) -> dict[str, Any]:
        assert o.jobs is not None and o.max_tokens is not None and o.tokens_per_s is not None
        body = job_body(o.max_tokens, o.tokens_per_s, provider=o.provider)
        group = {"name": "ingest", "count": o.jobs, "body": body, "watch": False}
        spec = {**self._stream_spec(o, [group]), "watching": False}
        out = self._both(stack, base, spec, o.jobs)
        for side in (out, out.get("baseline") or {}):
            if side:
                side["accepted_jobs_per_s"] = report.rate(side["jobs"], side["duration_s"])
        return out

    def _batch(self, stack: Stack, base: dict[str, Any] | None, o: Options) -> dict[str, Any]:
        """``POST /v1/batches`` of ``batch_size`` jobs each, ``connections`` at once."""
        assert o.jobs is not None and o.max_tokens is not None and o.tokens_per_s is not None
        body = job_body(o.max_tokens, o.tokens_per_s, provider=o.provider)
        group = {"name": "batch", "count": o.jobs, "body": body, "batch_size": o.batch_size}
        spec = {**self._stream_spec(o, [group]), "watching": False}
        out = self._both(stack, base, spec, o.jobs)
        for side in (out, out.get("baseline") or {}):
            if side:
                side["accepted_jobs_per_s"] = report.rate(side["jobs"], side["duration_s"])
        out["batch_size"] = o.batch_size
        return out

    def _fanout(self, stack: Stack, base: dict[str, Any] | None, o: Options) -> dict[str, Any]:
        """Idle streams of a paused batch (they only see ``queued``), plus a few active jobs."""
        assert o.jobs is not None and o.max_tokens is not None and o.tokens_per_s is not None
        assert o.idle is not None
        active = {
            "name": "job",
            "count": o.jobs,
            "body": job_body(o.max_tokens, o.tokens_per_s, provider=o.provider),
        }
        with httpx.Client(base_url=stack.url, timeout=60) as client:
            auth = {"Authorization": f"Bearer {stack.api_key}"}
            # A batch job fetched before the pause lands would run: so slowly it stays idle.
            held = job_body(10, 0.001, priority="low", provider=o.provider)
            jobs = [{**held, "prompt": f"idle {i}"} for i in range(o.idle)]
            r = client.post("/v1/batches", json={"jobs": jobs}, headers=auth)
            r.raise_for_status()
            batch = r.json()
            client.post(f"/v1/batches/{batch['batch_id']}/pause", headers=auth).raise_for_status()
            try:
                spec = {**self._stream_spec(o, [active]), "idle_ids": batch["job_ids"]}
                base_spec = {**spec, "idle_ids": [f"idle-{i}" for i in range(o.idle)]}
                public = stack.children[0].pid if stack.children else None
                with PeakRss(public) as rss:
                    out = self._both(stack, base, spec, o.jobs * o.max_tokens, base_spec)
                if rss.grown_kb is not None:
                    out["gateway_kb_per_stream"] = round(rss.grown_kb / (o.idle + o.jobs), 1)
            finally:
                cancel = f"/v1/batches/{batch['batch_id']}/cancel"
                client.post(cancel, headers=auth).raise_for_status()
        out["idle_streams"] = o.idle
        out["offered_tokens_per_s"] = o.jobs * o.tokens_per_s
        return out

    def _priority(self, stack: Stack, base: dict[str, Any] | None, o: Options) -> dict[str, Any]:
        """Saturate the worker with low jobs, then a trickle of urgent ones; no baseline (no
        queue without a log)."""
        assert o.jobs is not None and o.max_tokens is not None and o.tokens_per_s is not None
        assert o.urgent is not None
        low = job_body(o.max_tokens, o.tokens_per_s, "low", o.provider)
        urgent = job_body(o.max_tokens, o.tokens_per_s, "urgent", o.provider)
        groups = [
            {"name": "low", "count": o.jobs, "body": low},
            {"name": "urgent", "count": o.urgent, "body": urgent, "interval_s": URGENT_INTERVAL_S},
        ]
        total = (o.jobs + o.urgent) * o.max_tokens
        return self._both(stack, None, self._stream_spec(o, groups), total)


class PeakRss:
    """The most a process's resident memory grew while the block ran (sampled every 0.2 s):
    the public face's, for the memory each open stream costs the gateway."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.grown_kb: int | None = None
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self) -> PeakRss:
        if self.pid is not None:
            self._before = rss_kb(self.pid)
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        assert self.pid is not None
        while not self._stop.wait(0.2):
            self._peak = max(self._peak, rss_kb(self.pid))

    def __exit__(self, *_: object) -> None:
        if self.pid is not None:
            self._stop.set()
            self._thread.join()
            self.grown_kb = max(0, self._peak - self._before)


def shape(result: dict[str, Any]) -> dict[str, Any]:
    """The report of one scenario: internal keys dropped, ratios, verdicts, machine added."""
    if not result.get("idle_streams"):
        result.pop("idle_open", None)
    result.setdefault("baseline", None)
    return report.finish(result, result.get("offered_tokens_per_s"))
