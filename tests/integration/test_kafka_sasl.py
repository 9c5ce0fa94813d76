"""Every part of tokenrelay against brokers that demand a SCRAM login.

A real broker whose client listener admits only SCRAM-SHA-512 users; the public
face, a worker and the aggregator (Faust) each run in their own process with
``TOKENRELAY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`` and the user's password.
A job runs from submission to its last token and its state; with a wrong
password a part says in its log that the brokers refused its login.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import LocalBroker, free_port, throwaway_broker
from tests.conftest import ALICE
from tests.support.aggregators import get_state
from tests.support.faults import three_parts
from tests.support.sse import read_events
from tests.support.workers import settings_env

pytestmark = pytest.mark.kafka

USER, PASSWORD = "tokenrelay", "scram-secret-1"


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = throwaway_broker(
        tmp_path_factory.mktemp("scram"), Settings(), scram_users={USER: PASSWORD}
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def sasl_settings(
    make_settings: Callable[..., Settings], broker: LocalBroker, password: str
) -> Settings:
    return make_settings(
        kafka_bootstrap=f"127.0.0.1:{broker.sasl_port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
    )


def test_a_job_runs_end_to_end_through_a_scram_listener(
    scram_broker: LocalBroker, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = sasl_settings(make_settings, scram_broker, PASSWORD)
    with three_parts(settings, tmp_path) as parts, httpx.Client(base_url=parts["public"].url) as c:
        r = c.post("/v1/jobs", json={"prompt": "p", "max_tokens": 5}, headers=ALICE)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        events = read_events(c, f"/v1/jobs/{job_id}/events", headers=ALICE)
        assert [e.event for e in events] == ["queued", "started", *["token"] * 5, "completed"]
        deadline = time.monotonic() + 30
        while (state := get_state(parts["aggregator"].url, job_id)) is None or state[
            "status"
        ] != "succeeded":
            assert time.monotonic() < deadline, f"the aggregator never saw it end: {state}"
            time.sleep(0.1)


def test_a_wrong_password_is_named_in_the_log_and_the_part_never_reports_ready(
    scram_broker: LocalBroker, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A part waits for Kafka at start (``STARTUP_TIMEOUT_S``) and says why it waits: here
    the brokers' refusal of its login, not a vague "no broker answered"."""
    settings = sasl_settings(make_settings, scram_broker, "not-the-password")
    port = free_port()
    path = tmp_path / "ingest.log"
    with path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "ingest", "--port", str(port)],
            env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "refused us" not in path.read_text(errors="replace"):
            assert proc.poll() is None, path.read_text()[-3000:]
            assert time.monotonic() < deadline, path.read_text()[-3000:]
            time.sleep(0.2)
        line = next(x for x in path.read_text().splitlines() if "refused us" in x)
        assert "SASL authentication error" in line and "SCRAM-SHA-512" in line
        assert "not-the-password" not in path.read_text(), "the password is never logged"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
