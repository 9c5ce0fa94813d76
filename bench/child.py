"""An aggregator (``tokenrelay aggregator``) in a child process that a benchmark can kill -9.

The child gets the benchmark's settings as ``TOKENRELAY_*`` variables, logs to a
file, and keeps its data dir and port across ``kill()`` and ``start()``, so a
restart recovers from its own store (or, with ``memory://``, from the changelog).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from services.core.settings import Settings, child_env

POLL_S = 0.05
# "12:00:01 ERROR services.x: message" as services.core.logs formats a line.
_LEVEL = re.compile(r"^\S+ (WARNING|ERROR|CRITICAL)\s+(\S+): (.*)$")


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a child's log, for an error message."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def log_complaints(log: Path) -> Counter[str]:
    """WARNING and worse lines of a child's log (and tracebacks), by level, logger and message."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        m = _LEVEL.match(line)
        if m:
            found[f"{m.group(1)} {m.group(2)}: {m.group(3)[:160]}"] += 1
        elif line.startswith("Traceback"):
            found["Traceback"] += 1
    return found


def settings_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    env = child_env(settings)
    return {**env, "TOKENRELAY_DATA_DIR": str(data_dir)}


@dataclass
class Startup:
    """Seconds from ``start()``: first HTTP answer, ``/readyz`` 200."""

    web_s: float
    ready_s: float
    not_ready_answers: int


@dataclass
class AggregatorChild:
    settings: Settings
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.aggregator_port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings, self.data_dir)}
        cmd = [sys.executable, "-m", "services.cli", "aggregator"]
        cmd += ["--port", str(self.settings.aggregator_port)]
        with self.log.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> Startup:
        """Poll ``/readyz`` until 200; raise if the child exits or the deadline passes."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        web_s: float | None = None
        not_ready = 0
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aggregator exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
            except httpx.HTTPError:
                r = None
            if r is not None:
                now = time.perf_counter() - self.started_at
                web_s = now if web_s is None else web_s
                if r.status_code == 200:
                    return Startup(web_s, now, not_ready)
                not_ready += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"aggregator not ready after {timeout:.0f}s:\n{self.tail()}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        """kill -9: no flush, no commit, no goodbye to the group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def complaints(self) -> Counter[str]:
        return log_complaints(self.log)
