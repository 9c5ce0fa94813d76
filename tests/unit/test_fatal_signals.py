"""A process that embeds chDB still dies when it crashes, so that a supervisor restarts it.

Without ``load_chdb``'s restore, chDB's handler takes the abort and the process
hangs on alive with a dead engine (``os.abort()`` never returns nor ends it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ABORT_AFTER_LOAD = """
import os, sys
from services.core.fatal_signals import load_chdb
load_chdb(sys.argv[1])
print("chdb" in sys.modules, flush=True)
os.abort()
"""


def run(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ABORT_AFTER_LOAD, dsn],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


def test_an_abort_kills_a_process_that_loaded_chdb(tmp_path: Path) -> None:
    done = run(f"chdb://{tmp_path / 'chdb'}")
    assert done.stdout.strip() == "True"
    assert done.returncode == -signal.SIGABRT, done.stderr[-2000:]
    assert "Fatal Python error: Aborted" in done.stderr  # every thread's stack, for the log


def test_a_server_url_loads_no_engine(tmp_path: Path) -> None:
    done = run("http://clickhouse:8123")
    assert done.stdout.strip() == "False"
    assert done.returncode == -signal.SIGABRT
