"""Worker processes for tests that need more than one, or need to kill one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.core.settings import Settings, child_env
from services.localdev.kafka import free_port
from tests.support.stack import running


def settings_env(settings: Settings) -> dict[str, str]:
    """The child's ``TOKENRELAY_*`` variables; a setting left None keeps its default."""
    return child_env(settings)


@dataclass
class ChildProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str
    args: list[str]
    env: dict[str, str]

    @property
    def worker_id(self) -> str:
        return self.name

    def kill(self) -> None:
        """kill -9: no shutdown, no commit, no goodbye to the group."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process stops where it is, so what the broker holds for it stays put."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


WorkerProcess = ChildProcess


@contextmanager
def child_process(
    name: str,
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    port: int,
    module: str = "services.cli",
) -> Iterator[ChildProcess]:
    """``tokenrelay <args>`` (``python -m module``) in a child process, yielded once its
    ``/readyz`` answers 200."""
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    child = ChildProcess(name, proc, log, f"http://127.0.0.1:{port}", args, env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{child.tail()}")
            try:
                if httpx.get(f"{child.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready:\n{child.tail()}")
            time.sleep(0.1)
        try:
            yield child
        except BaseException:
            # pytest shows what a failed test printed: the child's last words name the cause
            print(f"\n--- the last lines of {log}:\n{child.tail(80)}")
            raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def worker_process(
    settings: Settings,
    worker_id: str,
    log_dir: Path,
    module: str = "services.cli",
    extra_env: dict[str, str] | None = None,
) -> Iterator[ChildProcess]:
    """``tokenrelay serve worker`` in a child process, ready (in its group) when yielded."""
    port = free_port()
    env = {
        **settings_env(settings),
        "TOKENRELAY_WORKER_ID": worker_id,
        "TOKENRELAY_DATA_DIR": str(log_dir / worker_id),
        **(extra_env or {}),
    }
    args = ["serve", "worker", "--port", str(port)]
    with child_process(worker_id, args, env, log_dir, port, module) as worker:
        yield worker


@contextmanager
def two_workers_and_ingest(
    settings: Settings, log_dir: Path, parts: tuple[str, ...] = ("ingest",)
) -> Iterator[tuple[WorkerProcess, WorkerProcess, str]]:
    """Two worker processes in one group, and ingest (or ``parts``) in this process:
    (a, b, base URL)."""
    run = uuid.uuid4().hex[:6]
    with (
        worker_process(settings, f"wa-{run}", log_dir) as wa,
        worker_process(settings, f"wb-{run}", log_dir) as wb,
        running(settings, list(parts)) as base,
    ):
        yield wa, wb, base
