"""``tokenrelay top``'s frame for a snapshot, through rich's recording console."""

from __future__ import annotations

import httpx
from rich.console import Console

from services.cli_top import Snapshot, last_full_minute, live_rate, read_snapshot, render

NOW = 1_800_000_000.0
RUNNING = {
    "job_id": "01a24a00-0000-7000-8000-000000000001",
    "model": "gpt-4o-mini",
    "token_count": 30,
    "max_tokens": 120,
    "first_token_at": int((NOW - 2.0) * 1e6),
}


def frame(snap: Snapshot) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(render(snap, now=NOW))
    return console.export_text()


def test_a_frame_shows_queues_running_jobs_with_progress_rates_and_failures() -> None:
    snap = Snapshot(
        queues=[{"priority": "normal", "queued": 7, "running": 1, "oldest_wait_s": 3.25}],
        running=[RUNNING, {**RUNNING, "job_id": "open-ended", "max_tokens": None}],
        failed=[{"job_id": "j-failed", "error_kind": "auth", "error_message": "bad key"}],
        minute={"tokens_per_s": 1234.5, "jobs": 42},
    )
    text = frame(snap)
    assert "tokens/s 1,234.5" in text and "jobs/min 42" in text
    normal = next(line for line in text.splitlines() if "normal" in line)
    assert [cell.strip() for cell in normal.split("│")[1:5]] == ["normal", "7", "1", "3.2s"]
    assert RUNNING["job_id"] in text and "30/120" in text and "15.0" in text  # 30 tokens in 2 s
    assert "30 tokens" in text  # no max_tokens: a count, not a bar
    assert "j-failed" in text and "auth: bad key" in text


def test_a_failed_read_keeps_the_last_frame_and_says_why() -> None:
    text = frame(Snapshot(running=[RUNNING], problem="connection refused"))
    assert RUNNING["job_id"] in text and "last read failed: connection refused" in text


def test_the_last_full_minute_and_a_live_rate() -> None:
    assert last_full_minute([]) is None
    assert last_full_minute([{"t": 1}]) == {"t": 1}
    assert last_full_minute([{"t": 1}, {"t": 2}]) == {"t": 1}
    assert live_rate({"token_count": 10}, NOW) is None
    assert live_rate(RUNNING, NOW) == 15.0


def test_a_failed_analytics_read_keeps_the_rest_and_names_the_apis_message() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/analytics/throughput":
            error = {"code": "rate_limited", "message": "60 analytics questions a minute"}
            return httpx.Response(429, json={"error": error})
        if request.url.path == "/v1/queues":
            return httpx.Response(200, json={"queues": [{"priority": "low"}]})
        return httpx.Response(200, json={"jobs": [RUNNING]})

    client = httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer))
    snap = read_snapshot(client, Snapshot(minute={"jobs": 3}), analytics=True)
    assert snap.queues == [{"priority": "low"}] and snap.running == [RUNNING]
    assert snap.minute == {"jobs": 3}  # the last one read
    assert snap.problem == "/v1/analytics/throughput: 429 60 analytics questions a minute"
