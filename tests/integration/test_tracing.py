"""One trace per job, from submission through the worker to the watcher's stream.

The public face, a worker and the aggregator run in their own processes with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a local OTLP/HTTP receiver; the trace
context crosses process boundaries only in Kafka record headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE
from tests.support.faults import three_parts
from tests.support.otlp import ReceivedSpan, otlp_receiver
from tests.support.sse import read_events

pytestmark = pytest.mark.kafka


def test_a_job_is_one_trace_from_submit_to_its_last_streamed_event(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        with (
            three_parts(settings, tmp_path) as parts,
            httpx.Client(base_url=parts["public"].url) as c,
        ):
            r = c.post("/v1/jobs", json={"prompt": "p", "max_tokens": 5}, headers=ALICE)
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            events = read_events(c, f"/v1/jobs/{job_id}/events", headers=ALICE)
            assert events[-1].event == "completed"

            def spans() -> tuple[ReceivedSpan, ReceivedSpan, ReceivedSpan] | None:
                found = [
                    [
                        s
                        for s in receiver.named(n)
                        if s.attributes.get("tokenrelay.job_id") == job_id
                    ]
                    for n in ("submit job", "run job", "stream job events")
                ]
                return (found[0][0], found[1][0], found[2][0]) if all(found) else None

            deadline = time.monotonic() + 30
            while (found := spans()) is None:
                assert time.monotonic() < deadline, [s.name for s in receiver.spans]
                time.sleep(0.1)
    submit, run, stream = found
    assert submit.trace_id == run.trace_id == stream.trace_id
    assert run.parent_id == submit.span_id and stream.parent_id == run.span_id
    assert submit.service == "tokenrelay-ingest-gateway-analytics"
    assert run.service == "tokenrelay-worker" and stream.service == submit.service
    assert run.attributes["tokenrelay.outcome"] == "completed"
    assert run.attributes["tokenrelay.attempt"] == 1
    assert stream.attributes["tokenrelay.events_sent"] == len(events)
    assert stream.attributes["tokenrelay.last_event"] == "completed"
    # The run and the stream both end once the job's terminal event is committed, in two
    # processes: either may close its span first.
    assert submit.start_ns <= run.start_ns <= stream.end_ns and run.start_ns <= run.end_ns
