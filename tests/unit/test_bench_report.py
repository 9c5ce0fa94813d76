"""The benchmark report's arithmetic and shape: percentiles, ratios, verdicts, table rows."""

from __future__ import annotations

import orjson
import pytest

from bench.harness import report
from bench.harness.scenarios import Options, resolve, shape


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 50) == pytest.approx(50.5)
    assert report.percentile(values, 99) == pytest.approx(99.01)
    assert report.percentile(values, 100) == 100
    assert report.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        report.percentile([], 50)


def test_summary_is_ordered_and_empty_input_gives_none() -> None:
    s = report.summarize([5.0, 1.0, 3.0, 100.0, 2.0])
    assert s is not None
    assert list(s) == ["p50", "p90", "p99", "max"]
    assert s["p50"] == 3.0
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"] == 100.0
    assert report.summarize([]) is None


def test_rate_of_nothing_timed_is_zero() -> None:
    assert report.rate(1000, 2.0) == 500.0
    assert report.rate(10, 0.0) == 0.0


def test_ratios_divide_ours_by_the_baseline() -> None:
    ours = {
        "tokens_per_s": 40_000.0,
        "token_latency_ms": {"p50": 4.0, "p90": 8.0, "p99": 20.0, "max": 50.0},
    }
    base = {
        "tokens_per_s": 80_000.0,
        "token_latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 4.0, "max": 0.0},
    }
    r = report.ratios(ours, base)
    assert r["tokens_per_s"] == 0.5
    assert r["token_latency_ms.p50"] == 4.0
    assert r["token_latency_ms.p99"] == 5.0
    assert "token_latency_ms.max" not in r  # no division by a zero baseline
    assert report.ratios(ours, None) == {}


def test_targets_follow_the_issue() -> None:
    steady = report.targets_for("steady", 5000.0)
    assert [(t.figure, t.op, t.bound) for t in steady] == [
        ("token_latency_ms.p99", "<=", 50.0),
        ("tokens_per_s", ">=", 4750.0),
    ]
    assert {t.figure for t in report.targets_for("max", None)} == {
        "tokens_per_s",
        "ratio.tokens_per_s",
    }
    assert [t.bound for t in report.targets_for("max", None)] == [50_000.0, 0.6]
    assert {t.figure for t in report.targets_for("ingest", None)} == {
        "accepted_jobs_per_s",
        "submit_ms.p99",
    }
    assert [(t.figure, t.bound) for t in report.targets_for("batch", None)] == [
        ("accepted_jobs_per_s", 20_000.0)
    ]
    assert [(t.figure, t.op, t.bound) for t in report.targets_for("fanout", 1000.0)] == [
        ("token_latency_ms.p99", "<=", 50.0),
        ("gateway_kb_per_stream", "<=", 20.0),
    ]
    assert report.targets_for("priority", None) == []


def test_the_openai_path_has_its_own_throughput_and_cpu_targets() -> None:
    steady = report.targets_for("steady", 5000.0, "openai")
    assert [t.figure for t in steady] == [
        "token_latency_ms.p99",
        "tokens_per_s",
        "cpu_ms_per_token",
    ]
    assert [(t.figure, t.bound) for t in report.targets_for("max", None, "openai")] == [
        ("tokens_per_s", 20_000.0),
        ("cpu_ms_per_token", 0.5),
    ]
    finished = report.finish(
        {"scenario": "max", "provider": "openai", "tokens_per_s": 25_000.0, "cpu_ms_per_token": 0.7}
    )
    assert [t["met"] for t in finished["targets"]] == [True, False]


def test_verdicts_meet_miss_or_lack_a_figure() -> None:
    t = report.Target("p99 ≤ 50", "token_latency_ms.p99", "<=", 50.0)
    assert t.verdict({"token_latency_ms": {"p99": 12.0}})["met"] is True
    assert t.verdict({"token_latency_ms": {"p99": 51.0}})["met"] is False
    assert t.verdict({"token_latency_ms": None})["met"] is None
    floor = report.Target("fast", "tokens_per_s", ">=", 100.0)
    assert floor.verdict({"tokens_per_s": 100.0})["met"] is True


def sample() -> dict[str, object]:
    lat = {"p50": 2.0, "p90": 4.0, "p99": 9.0, "max": 30.0}
    return {
        "scenario": "steady",
        "jobs": 100,
        "tokens": 100_000,
        "duration_s": 21.0,
        "tokens_per_s": 4_900.0,
        "token_latency_ms": lat,
        "submit_to_first_token_ms": lat,
        "offered_tokens_per_s": 5000.0,
        "idle_open": 0,
        "baseline": {
            "tokens_per_s": 4_990.0,
            "token_latency_ms": {"p50": 0.2, "p90": 0.4, "p99": 0.9, "max": 3.0},
            "submit_to_first_token_ms": lat,
        },
    }


def test_the_json_line_has_the_issues_shape() -> None:
    out = shape(sample())  # type: ignore[arg-type]
    line = orjson.loads(orjson.dumps(out))
    for key in (
        "scenario",
        "jobs",
        "tokens",
        "duration_s",
        "tokens_per_s",
        "token_latency_ms",
        "submit_to_first_token_ms",
        "baseline",
        "ratio",
        "machine",
        "targets",
    ):
        assert key in line, key
    assert "idle_open" not in line
    assert line["ratio"]["token_latency_ms.p99"] == 10.0
    assert [v["met"] for v in line["targets"]] == [True, True]
    assert "cores" in line["machine"]


def test_table_rows_show_both_sides_and_the_ratio() -> None:
    out = shape(sample())  # type: ignore[arg-type]
    rows = {r[0]: r[1:] for r in report.rows(out)}
    assert rows["tokens_per_s"] == ("4,900.0", "4,990.0", "0.98")
    assert rows["token_latency_ms p99"] == ("9.00", "0.90", "10.00")
    assert report.table(out).row_count == len(report.rows(out)) + 2


def test_fanout_rows_show_the_streams_and_their_memory() -> None:
    out = {"idle_streams": 10_000, "idle_open": 10_000, "gateway_kb_per_stream": 24.25}
    rows = {r[0]: r[1] for r in report.rows(out)}
    assert rows == {
        "idle_streams": "10,000",
        "idle_open": "10,000",
        "gateway_kb_per_stream": "24.25",
    }


def test_priority_rows_list_queue_wait_by_priority() -> None:
    lat = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0}
    out = {"queue_wait_ms": {"low": lat, "urgent": lat}}
    names = [r[0] for r in report.rows(out)]
    assert "queue_wait_ms urgent p99" in names and "queue_wait_ms low max" in names


def test_options_take_the_scenarios_defaults_unless_given() -> None:
    assert resolve("steady", Options()).jobs == 100
    assert resolve("steady", Options(jobs=3)).jobs == 3
    assert resolve("max", Options()).tokens_per_s == 0
    assert resolve("steady", Options(tokens_per_s=0)).tokens_per_s == 0
