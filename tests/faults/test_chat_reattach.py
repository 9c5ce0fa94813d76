"""A chat completion whose public face is killed mid-stream: the job goes on, and reads
whole by the id its answer named (``x-tokenrelay-job-id``).

``tokenrelay up`` runs the stack; the official ``openai`` SDK streams a chat
completion; a tenth of the way in, the public face is killed with SIGKILL. The
SDK's stream breaks (it cannot resume: OpenAI's wire has no cursor), ``up``
starts the public face again, and the job, which never depended on that
connection, completes: its text read by id is what the stream had begun.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from tokenrelay_client import Client

from services.core.settings import Settings
from services.localdev.kafka import free_port, free_ports_after
from tests.support.up import children, tokenrelay_up, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKENS = 300


@pytest.mark.timeout(300)
def test_a_chat_stream_cut_by_a_killed_public_face_reads_whole_by_job_id(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_ports_after(1)
    settings = make_settings(http_port=port, aggregator_port=free_port(), fake_tokens_per_s=30.0)
    base = f"http://127.0.0.1:{port}"
    with tokenrelay_up(settings, tmp_path) as (up, output):
        wait_for("the stack", lambda: "tokenrelay is ready" in output.read_text(), 150, output)
        got: list[str] = []
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="key-alice", max_retries=0)
        with (
            sdk,
            pytest.raises((openai.APIConnectionError, httpx.TransportError)),
            sdk.chat.completions.with_streaming_response.create(
                model="fake-1",
                messages=[{"role": "user", "content": "outlive your server"}],
                max_tokens=TOKENS,
                stream=True,
            ) as response,
        ):
            job_id = response.headers["x-tokenrelay-job-id"]
            for chunk in response.parse():
                got.append(chunk.choices[0].delta.content or "")
                if len(got) == TOKENS // 10:
                    os.kill(children(up.pid)["public"], signal.SIGKILL)
        wait_for(
            "the public face again",
            lambda: "public restarted" in output.read_text(),
            90,
            output,
        )
        with Client(base, api_key="key-alice") as client:
            state = client.wait(job_id)
    assert state.status == "succeeded" and state.token_count == TOKENS
    assert state.content is not None and state.content.startswith("".join(got))
    assert len("".join(got)) < len(state.content)
