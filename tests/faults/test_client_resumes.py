"""The Python client's ``tokens()`` carries on across a public face killed with SIGKILL.

``tokenrelay up`` runs the stack; a client iterates a job's tokens; a tenth of the
way in, the public face (which serves that stream) is killed with SIGKILL. ``up``
starts it again on the port it holds, the client reopens the stream after its
last event, and the text it got is the job's whole content: no gap, no repeat.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenrelay_client import Client

from services.core.settings import Settings
from services.localdev.kafka import free_port, free_ports_after
from tests.support.up import children, tokenrelay_up, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKENS = 300


@pytest.mark.timeout(300)
def test_tokens_carry_on_across_a_killed_public_face(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_ports_after(1)
    settings = make_settings(http_port=port, aggregator_port=free_port())
    with tokenrelay_up(settings, tmp_path) as (up, output):
        wait_for("the stack", lambda: "tokenrelay is ready" in output.read_text(), 150, output)
        killed = None
        got: list[str] = []
        with Client(f"http://127.0.0.1:{port}", api_key="key-alice", give_up_s=90) as client:
            job = client.submit(
                "a stream that outlives its server",
                max_tokens=TOKENS,
                provider_options={"tokens_per_s": 30},
            )
            for text in client.tokens(job.job_id):
                got.append(text)
                if len(got) == TOKENS // 10:
                    killed = children(up.pid)["public"]
                    os.kill(killed, signal.SIGKILL)
            state = client.wait(job.job_id)
        assert killed is not None
        assert "public exited with code -9; restarting in 1s" in output.read_text()
        assert children(up.pid)["public"] != killed
    assert state.status == "succeeded" and state.token_count == TOKENS
    assert len(got) == TOKENS and "".join(got) == state.content
