"""``examples/subscriber.py`` against a real broker and stack: a webhook per finished job,
once per job across a restart of the subscriber, each with its ``Idempotency-Key``."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ALICE
from tests.support.stack import running

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriber.py"


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.headers["Idempotency-Key"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Recorder", (Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join()


def until(done: Callable[[], bool], what: str, timeout: float = 60) -> None:
    give_up = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < give_up, what
        time.sleep(0.2)


def test_each_finished_job_is_posted_once_across_a_restart(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    webhook: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, received = webhook
    settings = make_settings()
    args = [
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        settings.kafka_bootstrap,
        "--topic",
        settings.topics.lifecycle,
        "--group",
        f"hooks-{settings.topic_prefix}",
        "--webhook",
        url,
        "--ledger",
        str(tmp_path / "ledger.sqlite"),
    ]
    with (
        (tmp_path / "subscriber.log").open("ab") as log,
        running(settings, ["ingest", "worker"]) as base,
        httpx.Client(base_url=base) as api,
    ):

        def submit(**body: Any) -> str:
            r = api.post("/v1/jobs", json={"prompt": "p", "max_tokens": 3, **body}, headers=ALICE)
            assert r.status_code == 202, r.text
            job_id: str = r.json()["job_id"]
            return job_id

        first = [submit() for _ in range(3)]
        first.append(submit(provider_options={"fail_with": "invalid_request"}))
        subscriber = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            until(lambda: len({k for k, _ in received}) >= 4, f"4 hooks, got {received}")
        finally:
            subscriber.terminate()  # a restart: SIGTERM ends it after the event at hand
            assert subscriber.wait(timeout=30) == 0
        second = [submit() for _ in range(2)]
        subscriber = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            until(lambda: len({k for k, _ in received}) >= 6, f"6 hooks, got {received}")
        finally:
            subscriber.terminate()
            assert subscriber.wait(timeout=30) == 0
    keys = Counter(k for k, _ in received)
    assert set(keys) == {f"{j}:1" for j in first + second}
    assert set(keys.values()) == {1}, f"posted more than once: {keys}"
    by_job = {body["job_id"]: body for _, body in received}
    assert by_job[first[3]]["status"] == "failed" and by_job[first[3]]["error"]
    assert by_job[first[0]]["status"] == "succeeded" and by_job[first[0]]["usage"]
