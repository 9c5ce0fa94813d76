"""``tokenrelay bench soak --minutes 1 --json``: the whole stack for a minute, and the figures'
shape — a mix of priorities, cancels, a retry, a failure and a batch that each end as they
must; memory of every process sampled, tokens and their p99 latency per minute, the slopes."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)
def test_one_minute_soak_reports_memory_latency_and_slopes() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "soak",
            "--minutes",
            "1",
            "--jobs",
            "4",
            "--max-tokens",
            "100",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])

    assert result["scenario"] == "soak"
    assert result["errors"] == 0
    assert result["wrong"] == 0, "every job and batch ended as its kind must"
    (minute,) = result["minutes"]
    assert minute["jobs"] > 0
    assert minute["batches"] == 1
    assert {"urgent", "low", "cancel", "retry", "fail"} <= set(minute["ended"]), minute["ended"]
    assert minute["tokens"] >= minute["jobs"] * 20, "every job's tokens were timed"
    assert 0 < minute["p99_token_latency_ms"] < 5000
    parts = {"public", "worker", "aggregator", "kafka"}
    assert set(minute["rss_mb"]) == parts and all(v > 10 for v in minute["rss_mb"].values())
    assert set(result["rss_slope_mb_per_min"]) == parts
    assert all(isinstance(v, float) for v in result["rss_slope_mb_per_min"].values())
    assert "soak: per minute" in done.stderr, "the table is shown"
