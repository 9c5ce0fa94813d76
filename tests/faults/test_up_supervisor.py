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
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import alive, free_port, free_ports_after
from tests.support.up import children, ready, tokenrelay_up, wait_for, what_happened

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


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
