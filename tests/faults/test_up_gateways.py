"""``TOKENRELAY_GATEWAYS=2 tokenrelay up``: two public-face processes on the one port, the
kernel spreading connections between them, and analytics alone, reached through either."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import free_port, free_ports_after
from services.localdev.stack import analytics_port, public_names
from tests.conftest import ALICE
from tests.faults.test_up_supervisor import (
    ready,
    tokenrelay_up,
    wait_for,
    what_happened,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


def test_names_and_ports_of_the_gateways() -> None:
    assert public_names(1) == ["public"]
    assert public_names(2) == ["public-1", "public-2"]
    assert analytics_port(Settings(http_port=8000, workers=2, gateways=1)) is None
    assert analytics_port(Settings(http_port=8000, workers=2, gateways=3)) == 8003


def _accepted_by(port: int) -> str:
    """The pid of the process that took a fresh connection to ``port`` (Linux: the owner of
    the server's end of it, from ``/proc``). Two processes started together can share a
    ``process_start_time_seconds`` (it has 10 ms steps), so that cannot tell them apart."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert c.recv(1024).startswith(b"HTTP/1.1 200"), "a process accepted and answered"
        ends = f"0100007F:{port:04X} 0100007F:{c.getsockname()[1]:04X}"
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        inode = next(line.split()[9] for line in lines if " ".join(line.split()[1:3]) == ends)
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            with contextlib.suppress(OSError):
                if any(str(fd.readlink()) == f"socket:[{inode}]" for fd in fd_dir.iterdir()):
                    return fd_dir.parent.name
    raise AssertionError(f"no process holds the server's end of connection {ends}")


@pytest.mark.timeout(300)
def test_two_gateways_share_the_port_and_forward_analytics(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_ports_after(2)  # the worker's health port, then the analytics process's
    settings = make_settings(http_port=port, aggregator_port=free_port(), workers=1, gateways=2)
    base = f"http://127.0.0.1:{port}"
    with tokenrelay_up(settings, tmp_path) as (up, output):
        wait_for("the stack", lambda: "tokenrelay is ready" in output.read_text(), 150, output)
        assert f"analytics alone at http://127.0.0.1:{port + 2}/readyz" in output.read_text()
        assert ready(f"http://127.0.0.1:{port + 2}")
        # Each fresh connection lands on one of the two processes: both are seen.
        served_by = {_accepted_by(port) for _ in range(40)}
        assert len(served_by) == 2, f"one process took all 40 connections; {what_happened(output)}"
        with httpx.Client(base_url=base, timeout=30) as api:
            jobs = []
            for i in range(8):
                r = api.post("/v1/jobs", json={"prompt": f"p{i}", "max_tokens": 3}, headers=ALICE)
                assert r.status_code == 202, r.text
                jobs.append(r.json()["job_id"])

            def all_done() -> bool:
                states = [api.get(f"/v1/jobs/{j}", headers=ALICE).json() for j in jobs]
                return all(s.get("status") == "succeeded" for s in states)

            wait_for("every job succeeded", all_done, 90, output)

            def counted() -> bool:
                r = api.get("/v1/analytics/cost", params={"group_by": "model"}, headers=ALICE)
                assert r.status_code == 200, r.text
                return sum(row["jobs"] for row in r.json()["rows"]) >= len(jobs)

            wait_for("analytics counted every job, through either gateway", counted, 60, output)
            refused = api.get("/v1/analytics/cost", params={"group_by": "nope"}, headers=ALICE)
            assert refused.status_code == 422, "the analytics process's own refusal comes back"
            assert refused.json()["error"]["field"] == "group_by"
            assert api.get("/v1/analytics/cost").status_code == 401
        up.send_signal(signal.SIGINT)
        up.wait(timeout=90)
    assert up.returncode == 0, output.read_text()[-2000:]
