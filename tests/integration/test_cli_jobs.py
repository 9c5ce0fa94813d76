"""``tokenrelay jobs …``, ``batch …`` and ``clean`` against a real stack (the aggregator
included: the job and batch reads come from it), as a user runs them: the URL and the
key from the environment, a table or ``--json`` on stdout, errors on stderr, exit 1."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.cli_jobs import batch_line, job_detail, job_rows
from services.core.settings import Settings
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.stack import running

pytestmark = pytest.mark.kafka

ALICE_KEY = "key-alice"
ADMIN_KEY = "key-admin"


@pytest.fixture
def api_url(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[str]:
    """A fresh stack with the aggregator (the analytics of the test process); its base URL."""
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with (
        aggregator_process(settings, tmp_path),
        running(settings, ["ingest", "gateway", "worker", "analytics"]) as base,
    ):
        yield base


@pytest.fixture
def cli(api_url: str) -> Callable[..., Any]:
    """Run ``tokenrelay <args>`` against the stack; returns the click result."""
    runner = CliRunner()

    def run(*args: str, key: str = ALICE_KEY) -> Any:
        env = {"TOKENRELAY_URL": api_url, "TOKENRELAY_API_KEY": key}
        return runner.invoke(app, list(args), env=env)

    return run


def eventually(run: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60) -> Any:
    give_up = time.monotonic() + timeout
    while True:
        last = run()
        if done(last):
            return last
        assert time.monotonic() < give_up, f"not reached: {last}"
        time.sleep(0.2)


def json_of(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_a_batch_from_a_file_is_watched_to_its_end_and_its_jobs_read(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    lines = [orjson.dumps({"prompt": f"line {i}", "max_tokens": 6}) for i in range(5)]
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")

    watched = cli("batch", "submit", str(jsonl), "--watch")
    assert watched.exit_code == 0, watched.output
    assert "succeeded: 100.0 % of 5 (5 succeeded)" in watched.stderr
    batch_id = watched.stderr.split("batch ")[1].split(":")[0]

    status = json_of(cli("batch", "status", batch_id, "--json"))
    assert (status["status"], status["counts"]["succeeded"]) == ("succeeded", 5)

    page = json_of(cli("jobs", "list", "--batch", batch_id, "--json"))
    assert {j["status"] for j in page["jobs"]} == {"succeeded"} and len(page["jobs"]) == 5

    table = cli("jobs", "list", "--batch", batch_id)
    assert table.exit_code == 0 and "5 jobs" in table.stdout
    assert all(j["job_id"] in table.stdout for j in page["jobs"])

    job = page["jobs"][0]
    shown = cli("jobs", "show", job["job_id"])
    assert shown.exit_code == 0 and "succeeded" in shown.stdout and "ttft ms" in shown.stdout

    watched_job = cli("jobs", "watch", job["job_id"])
    assert watched_job.exit_code == 0, watched_job.output
    assert watched_job.stdout.strip() == job["content"].strip()
    assert "completed 6 tokens" in watched_job.stderr

    cleaned = json_of(cli("clean", "--older-than", "0", "--json", key=ADMIN_KEY))
    assert cleaned["removed"] >= 5 and cleaned["older_than_s"] == 0
    assert "404" in cli("jobs", "show", job["job_id"]).stderr


def test_a_running_job_and_a_paused_batch_are_cancelled(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    slow = {"max_tokens": 500, "provider_options": {"tokens_per_s": 5}}
    jsonl = tmp_path / "slow.jsonl"
    jsonl.write_bytes(b"\n".join(orjson.dumps({"prompt": f"s{i}", **slow}) for i in range(3)))
    accepted = json_of(cli("batch", "submit", str(jsonl), "--json"))
    batch_id, first = accepted["batch_id"], accepted["job_ids"][0]

    assert "pausing" in cli("batch", "pause", batch_id).stderr
    assert "resuming" in cli("batch", "resume", batch_id).stderr
    eventually(
        lambda: cli("jobs", "show", first, "--json"),
        lambda r: r.exit_code == 0 and orjson.loads(r.stdout)["status"] == "running",
    )
    assert "cancelling" in cli("jobs", "cancel", first, "--reason", "enough").stderr
    eventually(
        lambda: cli("jobs", "show", first, "--json"),
        lambda r: r.exit_code == 0 and orjson.loads(r.stdout)["status"] == "cancelled",
    )
    assert "cancelling" in cli("batch", "cancel", batch_id).stderr
    final = eventually(
        lambda: cli("batch", "status", batch_id, "--json"),
        lambda r: r.exit_code == 0 and orjson.loads(r.stdout)["status"] == "cancelled",
    )
    assert orjson.loads(final.stdout)["counts"]["cancelled"] == 3


def test_errors_say_what_and_exit_1_and_submit_streams(cli: Callable[..., Any]) -> None:
    streamed = cli("submit", "hello there", "--max-tokens", "5", "--stream")
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.strip() and "completed 5 tokens" in streamed.stderr
    job = orjson.loads(cli("submit", "quiet", "--max-tokens", "1").stdout)
    assert job["status"] == "queued" and job["stream_token"]

    missing = cli("jobs", "show", "not-a-job")
    assert missing.exit_code == 1
    assert "404 no job not-a-job (job_id)" in missing.stderr
    assert cli("jobs", "list", "--status", "nope").exit_code == 1
    refused = cli("jobs", "list", key="wrong-key")
    assert refused.exit_code == 1 and "401" in refused.stderr
    assert cli("clean", "--older-than", "1d").exit_code == 1, "an admin's command"


def test_what_the_commands_print_is_built_from_the_answers() -> None:
    job = {
        "job_id": "j1",
        "status": "succeeded",
        "priority": "high",
        "model": "fake-1",
        "provider": "fake",
        "token_count": 12,
        "cost_usd": 0.0000125,
        "queued_at": 1_800_000_000_000_000,
        "ttft_ms": 3.5,
        "error_kind": None,
    }
    assert job_rows([job]) == [
        ("j1", "succeeded", "high", "fake-1", "12", "0.000013", "2027-01-15 08:00:00")
    ]
    detail = dict(job_detail(job))
    assert detail["model"] == "fake / fake-1" and detail["ttft ms"] == "3.5"
    assert "error" not in detail
    batch = {
        "batch_id": "b1",
        "status": "running",
        "total": 10,
        "progress_pct": 40.0,
        "counts": {"queued": 6, "running": 0, "succeeded": 3, "failed": 1, "cancelled": 0},
        "eta_s": 12.4,
        "cost_usd": 0.5,
    }
    assert batch_line(batch) == (
        "batch b1 running: 40.0 % of 10 (6 queued, 3 succeeded, 1 failed), ETA 12 s, $0.500000"
    )


def test_top_shows_queues_a_running_job_with_its_progress_and_a_failure(
    cli: Callable[..., Any], api_url: str
) -> None:
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}

    def submit(**options: object) -> str:
        body = {"prompt": "top", "max_tokens": 300, "provider_options": options}
        r = httpx.post(f"{api_url}/v1/jobs", json=body, headers=headers)
        assert r.status_code == 202, r.text
        job_id: str = r.json()["job_id"]
        return job_id

    broken = submit(fail_with="invalid_request", tokens_per_s=0)
    slow = submit(tokens_per_s=20)
    eventually(lambda: cli("jobs", "show", broken, "--json"), lambda r: '"failed"' in r.stdout)
    frame = eventually(
        lambda: cli("top", "--once"), lambda r: "/300" in r.stdout and slow in r.stdout
    )
    assert frame.exit_code == 0, frame.output
    for expected in (
        "queues",
        "normal",
        "running (1)",
        "recent failures",
        broken,
        "invalid_request",
    ):
        assert expected in frame.stdout
    cli("jobs", "cancel", slow)


def test_top_in_a_terminal_redraws_until_q(api_url: str) -> None:
    """``tokenrelay top`` in a pseudo-terminal: frames arrive, ``q`` ends it with 0."""
    main, side = os.openpty()
    env = {**os.environ, "TOKENRELAY_URL": api_url, "TOKENRELAY_API_KEY": ALICE_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "top"], stdin=side, stdout=side, stderr=side, env=env
    )
    os.close(side)
    try:
        seen = b""
        give_up = time.monotonic() + 60
        while seen.count(b"queues") < 2:  # the first frame and at least one redraw
            assert time.monotonic() < give_up, seen.decode(errors="replace")
            ready, _, _ = select.select([main], [], [], 1.0)
            if ready:
                seen += os.read(main, 65536)
        os.write(main, b"q")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
