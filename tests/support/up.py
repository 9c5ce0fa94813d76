"""``tokenrelay up`` as a test runs it: started on given settings, its children found by
the part they run, waited for with a deadline that says what ``up`` and each part said."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import httpx

from services.core.settings import Settings
from tests.support.workers import settings_env


def children(pid: int) -> dict[str, int]:
    """``up``'s children by the part they run: public, worker, aggregator."""
    out = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"worker" in cmd:
            out["worker"] = int(child)
        elif b"aggregator" in cmd:
            out["aggregator"] = int(child)
        elif b"ingest" in cmd:
            out["public"] = int(child)
    return out


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def what_happened(output: Path) -> str:
    """What ``up`` said, then the end of each part's log."""
    said = [f"up said:\n{output.read_text()[-3000:]}"]
    for log in sorted((output.parent / "data" / "logs").glob("*.log")):
        lines = [line for line in log.read_text().splitlines() if "GET /readyz" not in line]
        said.append(f"{log.name}:\n" + "\n".join(lines[-40:]))
    return "\n\n".join(said)


def wait_for(what: str, done: Callable[[], bool], timeout: float, output: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not in {timeout}s; {what_happened(output)}")
        time.sleep(0.2)


def as_background_job() -> None:
    """In the child before ``exec``: what a non-interactive shell's ``cmd &`` does (SIGINT
    ignored), in a process group of its own that a terminal's Ctrl-C would reach whole."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgrp()


@contextmanager
def tokenrelay_up(
    settings: Settings, tmp_path: Path, background_job: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``tokenrelay up`` on ``settings``; with ``background_job``, started as a shell's
    background job is (``as_background_job``)."""
    output = tmp_path / "up.out"
    prices = tmp_path / "prices.json"
    prices.write_bytes(resources.files("services.core").joinpath("prices.json").read_bytes())
    env = {
        **os.environ,
        **settings_env(settings),
        "TOKENRELAY_HTTP_PORT": str(settings.http_port),
        "TOKENRELAY_AGGREGATOR_PORT": str(settings.aggregator_port),
        "TOKENRELAY_AGGREGATOR_URL": f"http://127.0.0.1:{settings.aggregator_port}",
        "TOKENRELAY_DATA_DIR": str(tmp_path / "data"),
        "TOKENRELAY_PRICES": str(prices),
        "COLUMNS": "200",
    }
    with output.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=as_background_job if background_job else None,  # noqa: PLW1509
        )
    try:
        yield up, output
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=90)
            except subprocess.TimeoutExpired:
                up.kill()  # the test has failed already; leave no supervisor behind
                up.wait()
