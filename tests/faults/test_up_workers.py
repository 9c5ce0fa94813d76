"""``TOKENRELAY_WORKERS=2 tokenrelay up``: two worker processes in the workers' group, each with
its own health port, and the jobs run on both (their ``/metrics`` say how many each ended);
started as a shell's background job, a Ctrl-C to its group stops it whole."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.kafka import KafkaClients
from services.core.settings import Settings
from services.localdev.kafka import free_port, free_ports_after
from services.localdev.stack import worker_names, worker_ports
from tests.conftest import ALICE
from tests.faults.test_up_supervisor import (
    ready,
    tokenrelay_up,
    wait_for,
    what_happened,
)
from tests.support.metrics import metric_total

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


def test_names_and_ports_of_the_workers() -> None:
    assert worker_names(1) == ["worker"]
    assert worker_names(3) == ["worker-1", "worker-2", "worker-3"]
    assert worker_ports(Settings(http_port=8000, workers=2)) == [8001, 8002]


@pytest.mark.timeout(300)
def test_two_workers_join_the_group_and_both_run_jobs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_ports_after(2)  # the two workers' health ports
    settings = make_settings(
        http_port=port, aggregator_port=free_port(), workers=2, topic_partitions=4
    )
    with tokenrelay_up(settings, tmp_path, background_job=True) as (up, output):
        wait_for("the stack", lambda: "tokenrelay is ready" in output.read_text(), 150, output)
        said = output.read_text()
        for name, p in zip(["worker-1", "worker-2"], [port + 1, port + 2], strict=True):
            assert f"{name}" in said and f":{p}/readyz" in said, said
            wait_for(f"{name} ready", lambda p=p: ready(f"http://127.0.0.1:{p}"), 60, output)

        admin = KafkaClients.of(settings).admin()

        def both_in_group() -> bool:
            return asyncio.run(admin.group_member_count(settings.worker_group)) == 2

        wait_for("both workers in the group", both_in_group, 60, output)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            jobs = []
            for i in range(16):
                r = api.post("/v1/jobs", json={"prompt": f"p{i}", "max_tokens": 5}, headers=ALICE)
                assert r.status_code == 202, r.text
                jobs.append(r.json()["job_id"])

            def all_done() -> bool:
                states = [api.get(f"/v1/jobs/{j}", headers=ALICE).json() for j in jobs]
                return all(s.get("status") == "succeeded" for s in states)

            wait_for("every job succeeded", all_done, 90, output)
            states = [api.get(f"/v1/jobs/{j}", headers=ALICE).json() for j in jobs]
        ran = [_finished(f"http://127.0.0.1:{p}") for p in (port + 1, port + 2)]
        assert all(ran) and sum(ran) == len(jobs), f"jobs ended {ran}; {what_happened(output)}"
        assert {s["token_count"] for s in states} == {5}
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in its terminal: every process of the group
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up not stopped 90s after a Ctrl-C to its group; {what_happened(output)}")
    said = output.read_text()
    assert up.returncode == 0, said[-2000:]
    assert "restarted" not in said, said[-2000:]  # no part stopped by the Ctrl-C came back


def _finished(worker: str) -> float:
    """Attempts the worker at this health URL ended (its ``/metrics``)."""
    text = httpx.get(f"{worker}/metrics", timeout=10).text
    return metric_total(text, "tokenrelay_jobs_finished_total")
