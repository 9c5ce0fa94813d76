"""``tokenrelay bench --url … --api-key … --json`` against a stack this test started: a tiny
steady load and a small ingest burst, each with its baseline."""

from __future__ import annotations

import orjson
import pytest

from bench.harness.cli import run
from bench.harness.scenarios import Options

pytestmark = pytest.mark.kafka


def last_json_line(out: str) -> dict[str, object]:
    line = out.strip().splitlines()[-1]
    return orjson.loads(line)  # type: ignore[no-any-return]


def ordered(q: dict[str, float]) -> bool:
    return 0 < q["p50"] <= q["p90"] <= q["p99"] <= q["max"]


def test_steady_load_reports_every_token_and_its_baseline(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run("steady", stack, "key-admin", Options(jobs=3, max_tokens=10, tokens_per_s=100), True)
    report = last_json_line(capsys.readouterr().out)

    for key in ("scenario", "jobs", "tokens", "duration_s", "tokens_per_s", "ratio", "machine"):
        assert key in report, key
    assert report["scenario"] == "steady"
    assert report["jobs"] == 3
    assert report["tokens"] == 3 * 10
    assert ordered(report["token_latency_ms"])  # type: ignore[arg-type]
    assert ordered(report["submit_to_first_token_ms"])  # type: ignore[arg-type]
    baseline = report["baseline"]
    assert isinstance(baseline, dict)
    assert baseline["tokens"] == 30
    assert baseline["tokens_per_s"] > 0
    assert ordered(baseline["token_latency_ms"])
    assert "tokens_per_s" in report["ratio"]  # type: ignore[operator]


def test_ingest_burst_reports_accepted_jobs_per_second(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run("ingest", stack, "key-admin", Options(jobs=20), True)
    report = last_json_line(capsys.readouterr().out)

    assert report["scenario"] == "ingest"
    assert report["jobs"] == 20
    assert "errors" not in report
    assert report["accepted_jobs_per_s"] > 0  # type: ignore[operator]
    assert ordered(report["submit_ms"])  # type: ignore[arg-type]
    assert report["baseline"]["accepted_jobs_per_s"] > 0  # type: ignore[index]


def test_openai_provider_path_streams_through_the_sdk_from_the_bench_upstream(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--provider openai``: the bench's own stack, its worker on the openai SDK against the
    bench's OpenAI-compatible upstream; every token arrives, with the CPU it cost."""
    monkeypatch.setenv("TOKENRELAY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    options = Options(jobs=3, max_tokens=10, tokens_per_s=100, provider="openai")
    run("steady", None, None, options, True)
    report = last_json_line(capsys.readouterr().out)

    assert report["provider"] == "openai"
    assert report["tokens"] == 3 * 10
    assert "errors" not in report
    assert ordered(report["token_latency_ms"])  # type: ignore[arg-type]
    assert report["cpu_ms_per_token"] > 0  # type: ignore[operator]
    assert report["baseline"]["tokens"] == 30  # type: ignore[index]


def test_openai_provider_needs_the_bench_own_stack(stack: str) -> None:
    with pytest.raises(ValueError, match="own stack"):
        run("steady", stack, "key-admin", Options(jobs=1, provider="openai"), True)


def test_batch_scenario_counts_every_job_of_every_batch(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run("batch", stack, "key-admin", Options(jobs=50, batch_size=20), True)
    report = last_json_line(capsys.readouterr().out)

    assert report["scenario"] == "batch"
    assert report["jobs"] == 50  # batches of 20, 20 and 10
    assert "errors" not in report
    assert report["accepted_jobs_per_s"] > 0  # type: ignore[operator]
    assert report["submit_ms"]["max"] > 0  # type: ignore[index]
    assert report["baseline"]["jobs"] == 50  # type: ignore[index]
    assert [t["figure"] for t in report["targets"]] == ["accepted_jobs_per_s"]  # type: ignore[union-attr]


def test_freshness_measures_the_whole_stack_state_and_analytics_after_each_stream(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--freshness``: the bench's own stack with the aggregator and the analytics sink;
    for every job, how long after its terminal event reached the watcher its state read
    final and its ``jobs`` row was in ClickHouse; and how long after the streams a watched
    batch's progress and ``GET /v1/queues`` read every job ended."""
    monkeypatch.setenv("TOKENRELAY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    options = Options(jobs=3, max_tokens=10, tokens_per_s=100, freshness=True, baseline=False)
    run("steady", None, None, options, True, warmup_s=1.0)
    report = last_json_line(capsys.readouterr().out)

    assert "errors" not in report, report.get("errors")
    assert report["warmup_s"] == 1.0  # its broker was warmed first: none of that load counts
    assert report["tokens"] == 30
    state, analytics = report["state_lag_ms"], report["analytics_lag_ms"]
    assert 0 <= state["p50"] <= state["max"]  # type: ignore[index]
    assert state["p50"] <= analytics["p50"], "a row lands after the state it follows"  # type: ignore[index]
    # One watched batch ran beside the load; its progress and the queues were timed once
    # its streams, and then every stream, had ended.
    assert report["batch_lag_ms"]["max"] >= 0  # type: ignore[index]
    assert report["queues_lag_ms"]["max"] >= 0  # type: ignore[index]
    figures = {t["figure"] for t in report["targets"]}  # type: ignore[union-attr]
    assert {
        "state_lag_ms.max",
        "analytics_lag_ms.max",
        "batch_lag_ms.max",
        "queues_lag_ms.max",
    } <= figures
