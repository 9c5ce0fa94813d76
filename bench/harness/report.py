"""What a run measured, turned into figures: percentiles, ratios to the baseline, verdicts
against the issue's targets, the JSON line and the table.

Everything here is pure (numbers in, numbers or text out) so that the shape of the
report and its arithmetic are unit-tested without a broker.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from services.core.stats import percentile

QUANTILES = ("p50", "p90", "p99", "max")


def summarize(values: list[float]) -> dict[str, float] | None:
    """p50/p90/p99/max of ``values`` (ms, rounded to µs), or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    out = {f"p{q}": percentile(ordered, q) for q in (50, 90, 99)}
    out["max"] = ordered[-1]
    return {k: round(v, 3) for k, v in out.items()}


def rate(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds`` (0 when nothing was timed)."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


LATENCIES = (
    "token_latency_ms",
    "token_latency_settled_ms",
    "submit_to_first_token_ms",
    "submit_ms",
    "stream_open_ms",
    "state_lag_ms",
    "analytics_lag_ms",
    "batch_lag_ms",
    "queues_lag_ms",
)
"""The figures shown as quantiles, in this order (the last four with ``--freshness``)."""


def ratios(measured: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, float]:
    """tokenrelay ÷ baseline for throughput and each latency quantile both sides have.

    A throughput ratio above 1 means tokenrelay was faster; a latency ratio above 1
    means it was slower.
    """
    if not baseline:
        return {}
    out: dict[str, float] = {}
    for key in ("tokens_per_s", "accepted_jobs_per_s"):
        if measured.get(key) and baseline.get(key):
            out[key] = round(measured[key] / baseline[key], 3)
    for key in LATENCIES:
        ours, theirs = measured.get(key), baseline.get(key)
        if ours and theirs:
            for q in QUANTILES:
                if theirs.get(q):
                    out[f"{key}.{q}"] = round(ours[q] / theirs[q], 2)
    return out


@dataclass(frozen=True)
class Target:
    """One figure to chase: ``figure`` (a dotted path into the report) compared to ``bound``."""

    label: str
    figure: str
    op: str  # ">=" or "<="
    bound: float

    def value(self, report: dict[str, Any]) -> float | None:
        node: Any = report
        for part in self.figure.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node) if isinstance(node, int | float) else None

    def verdict(self, report: dict[str, Any]) -> dict[str, Any]:
        value = self.value(report)
        met = None
        if value is not None:
            met = value >= self.bound if self.op == ">=" else value <= self.bound
        return {
            "target": self.label,
            "figure": self.figure,
            "value": value,
            "bound": self.bound,
            "met": met,
        }


CPU_MS_PER_TOKEN = 0.5
"""What a Redis Streams + arq build of the same job spends per token (issue 17)."""


def targets_for(
    scenario: str,
    offered_tokens_per_s: float | None,
    provider: str = "fake",
    freshness: bool = False,
) -> list[Target]:
    """The issues' targets that apply to ``scenario`` on ``provider`` (steady's depend on
    the offered rate; the openai path has its own throughput and CPU targets), and the
    freshness targets when the whole stack was measured."""
    fresh = [
        Target("state final ≤ 1 s after the stream", "state_lag_ms.max", "<=", 1000.0),
        Target("analytics row ≤ 2 s after the stream", "analytics_lag_ms.max", "<=", 2000.0),
        Target("batch progress ≤ 1 s after its streams", "batch_lag_ms.max", "<=", 1000.0),
        Target("GET /v1/queues ≤ 1 s after the streams", "queues_lag_ms.max", "<=", 1000.0),
    ]
    return (
        [*_targets(scenario, offered_tokens_per_s, provider), *fresh]
        if freshness
        else (_targets(scenario, offered_tokens_per_s, provider))
    )


def _targets(scenario: str, offered_tokens_per_s: float | None, provider: str) -> list[Target]:
    openai = provider == "openai"
    cpu = Target(
        f"CPU ≤ {CPU_MS_PER_TOKEN} ms per token", "cpu_ms_per_token", "<=", CPU_MS_PER_TOKEN
    )
    if scenario == "steady":
        out = [Target("p99 token latency ≤ 50 ms", "token_latency_ms.p99", "<=", 50.0)]
        if offered_tokens_per_s:
            bound = round(0.95 * offered_tokens_per_s, 1)
            out.append(Target("delivered ≥ 0.95 x offered", "tokens_per_s", ">=", bound))
        return [*out, cpu] if openai else out
    if scenario == "max" and openai:
        return [Target("≥ 20,000 tokens/s end to end", "tokens_per_s", ">=", 20_000.0), cpu]
    if scenario == "max":
        return [
            Target("≥ 50,000 tokens/s end to end", "tokens_per_s", ">=", 50_000.0),
            Target("≥ 0.6 x baseline", "ratio.tokens_per_s", ">=", 0.6),
        ]
    if scenario == "ingest":
        return [
            Target("≥ 2,000 accepted jobs/s", "accepted_jobs_per_s", ">=", 2_000.0),
            Target("p99 submit ≤ 50 ms", "submit_ms.p99", "<=", 50.0),
        ]
    if scenario == "batch":
        return [Target("≥ 20,000 jobs/s accepted", "accepted_jobs_per_s", ">=", 20_000.0)]
    if scenario == "fanout":
        return [
            Target("live p99 token latency ≤ 50 ms", "token_latency_ms.p99", "<=", 50.0),
            Target("≤ 20 KB per open stream", "gateway_kb_per_stream", "<=", 20.0),
        ]
    return []


def finish(report: dict[str, Any], offered_tokens_per_s: float | None = None) -> dict[str, Any]:
    """Add the ratios to the baseline, the verdicts and the machine to a scenario's report."""
    report["ratio"] = ratios(report, report.get("baseline"))
    if offered_tokens_per_s:
        report["offered_tokens_per_s"] = offered_tokens_per_s
    report["targets"] = [
        t.verdict(report)
        for t in targets_for(
            report["scenario"],
            offered_tokens_per_s,
            report.get("provider", "fake"),
            "state_lag_ms" in report,
        )
    ]
    report["machine"] = machine()
    return report


def machine() -> str:
    """Cores, CPU model and OS, as the README reports them."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


# --- the table ----------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, tokenrelay, baseline, ratio) rows for the table, latency quantiles spelled out."""
    base = report.get("baseline") or {}
    ratio = report.get("ratio") or {}
    out: list[tuple[str, str, str, str]] = []
    for key in ("tokens_per_s", "accepted_jobs_per_s"):
        if key in report:
            out.append((key, _fmt(report[key]), _fmt(base.get(key)), _fmt(ratio.get(key))))
    for key in LATENCIES:
        ours = report.get(key)
        if not ours:
            continue
        theirs = base.get(key) or {}
        for q in QUANTILES:
            ratio_q = ratio.get(f"{key}.{q}")
            out.append((f"{key} {q}", _fmt(ours[q]), _fmt(theirs.get(q)), _fmt(ratio_q)))
    for priority, waits in (report.get("queue_wait_ms") or {}).items():
        for q in QUANTILES:
            out.append((f"queue_wait_ms {priority} {q}", _fmt(waits[q]), "—", "—"))
    for key in SINGLE_FIGURES:
        if report.get(key) is not None:
            out.append((key, _fmt(report[key]), _fmt(base.get(key)), "—"))
    return out


SINGLE_FIGURES = ("idle_streams", "idle_open", "gateway_kb_per_stream", "cpu_ms_per_token")
"""Figures of some scenarios shown as they are, when the report has them."""


def table(report: dict[str, Any]) -> Table:
    """The scenario's figures next to the baseline's, then each target and its verdict."""
    title = (
        f"{report['scenario']}: {report['jobs']} jobs, {report['tokens']:,} tokens "
        f"in {report['duration_s']:.1f} s"
    )
    t = Table(title=title, caption=report.get("machine"))
    for name in ("figure", "tokenrelay", "baseline (no Kafka)", "ratio"):
        t.add_column(name, justify="left" if name == "figure" else "right")
    for row in rows(report):
        t.add_row(*row)
    for v in report.get("targets", []):
        verdict = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "—"}[v["met"]]
        t.add_row(f"target: {v['target']}", _fmt(v["value"]), "", verdict)
    return t
