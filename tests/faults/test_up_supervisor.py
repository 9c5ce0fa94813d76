"""``tokenrelay up`` keeps its children alive, and stops the stack when one keeps crashing.

kill -9 of the worker, then of the public face: each time ``up`` says so in one
line, starts that part again on the port ``up`` holds for it (a request made
meanwhile waits and is answered), and the stack is ready again with the other
parts untouched. Then the price file is broken, so every new worker dies at
once: after three failures ``up`` stops the whole stack, names the worker and
its log, exits non-zero, and leaves no child behind.
"""

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
import pytest

from services.core.settings import Settings
from services.localdev.kafka import alive, free_port, free_ports_after
from tests.support.workers import settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


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


@contextmanager
def tokenrelay_up(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
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
            [sys.executable, "-m", "services.cli", "up"], env=env, stdout=out, stderr=out
        )
    try:
        yield up, output
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=90)


@pytest.mark.timeout(300)
def test_up_restarts_killed_parts_and_gives_up_on_a_crash_loop(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_ports_after(1)
    settings = make_settings(http_port=port, aggregator_port=free_port())
    public, worker = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    aggregator = f"http://127.0.0.1:{settings.aggregator_port}"
    with tokenrelay_up(settings, tmp_path) as (up, output):
        wait_for("the stack", lambda: "tokenrelay is ready" in output.read_text(), 150, output)
        first = children(up.pid)
        assert set(first) == {"public", "worker", "aggregator"}, first

        os.kill(first["worker"], signal.SIGKILL)
        wait_for(
            "a new worker",
            lambda: children(up.pid).get("worker") not in (None, first["worker"]) and ready(worker),
            90,
            output,
        )
        said = output.read_text()
        assert "worker exited with code -9; restarting in 1s" in said
        assert said.count("worker restarted, pid") == 1
        second = children(up.pid)
        assert second["public"] == first["public"] and second["aggregator"] == first["aggregator"]
        assert not alive(first["worker"]), "the killed worker was reaped, not left a zombie"
        assert ready(public) and ready(aggregator)

        os.kill(second["public"], signal.SIGKILL)
        wait_for("up to reap the public face", lambda: "public" not in children(up.pid), 10, output)
        asked_meanwhile = httpx.get(f"{public}/healthz", timeout=60)
        assert asked_meanwhile.status_code == 200, "a request made during the restart is answered"
        wait_for(
            "a new public face",
            lambda: (
                children(up.pid).get("public") not in (None, second["public"]) and ready(public)
            ),
            90,
            output,
        )
        assert "public exited with code -9; restarting in 1s" in output.read_text()
        third = children(up.pid)
        assert third["worker"] == second["worker"] and third["aggregator"] == first["aggregator"]
        assert not alive(second["public"])
        assert ready(worker)

        (tmp_path / "prices.json").write_text("{not json")
        os.kill(third["worker"], signal.SIGKILL)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up did not give up on the worker; {what_happened(output)}")
        said = output.read_text()
        everyone = set(first.values()) | set(second.values()) | set(third.values())

    assert up.returncode == 1, said[-2000:]
    assert "worker exited 3 times in 60s" in said
    assert str(tmp_path / "data" / "logs" / "worker.log") in said.replace("\n", "")
    assert not [pid for pid in everyone if alive(pid)], "up left a child running"
    assert not ready(public) and not ready(aggregator)
