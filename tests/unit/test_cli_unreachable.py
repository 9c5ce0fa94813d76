"""An API command with nothing at its URL says so in one line and exits 1 (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

from services.localdev.kafka import free_port


def test_an_api_command_without_an_answer_exits_1_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "jobs", "list"],
        env={**os.environ, "TOKENRELAY_URL": url, "TOKENRELAY_API_KEY": "k"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert f"no answer from {url}/v1/jobs" in run.stderr
    assert "Traceback" not in run.stderr
