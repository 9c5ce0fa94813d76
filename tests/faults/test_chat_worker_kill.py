"""A chat stream whose worker is killed mid-answer: it ends with an error that says where the
job reads whole, and never splices the next attempt's text onto the first's.

Two workers; the public face (ingest and gateway) in this process; the official
``openai`` SDK streams a chat completion, and once a few chunks arrived the worker
running the job is killed with SIGKILL. The other worker runs the job again as
attempt 2 from the start. OpenAI's wire has no way to take text back, so what a
user must get is the first attempt's text so far, then an error naming
``/v1/jobs/{id}/events``, and the job completed once, readable whole there.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import openai
import pytest
from tokenrelay_client import AsyncClient, StartedOverError

from schemas.events import JobEvent
from schemas.rules import TERMINAL_EVENT_TYPES
from tests.support.topic_reader import TopicReader, by_job, events_reader, of_type
from tests.support.workers import ChildProcess, two_workers_and_ingest

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKENS = 60
PUBLIC = ("ingest", "gateway")


async def kill_the_worker_running(
    job_id: str, log: TopicReader[JobEvent], workers: dict[str, ChildProcess]
) -> None:
    """kill -9 of the worker that started ``job_id``, once its ``started`` event is read."""
    events = await log.until(
        lambda ev: bool(of_type(by_job(ev, job_id), "started")), what="the job started"
    )
    workers[of_type(by_job(events, job_id), "started")[0].worker_id].kill()


@pytest.mark.timeout(240)
async def test_a_chat_stream_cut_by_a_killed_worker_ends_with_an_error_not_spliced_text(  # type: ignore[no-untyped-def]
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(worker_session_timeout_ms=6000, fake_tokens_per_s=10.0)
    got: list[str] = []
    with two_workers_and_ingest(settings, tmp_path, PUBLIC) as (wa, wb, base):
        workers = {wa.worker_id: wa, wb.worker_id: wb}
        sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="key-alice", max_retries=0)
        async with (
            sdk,
            events_reader(settings.kafka_bootstrap, settings.topics.tokens, 3) as log,
            sdk.chat.completions.with_streaming_response.create(
                model="fake-1",
                messages=[{"role": "user", "content": "outlive your worker"}],
                max_tokens=TOKENS,
                stream=True,
            ) as response,
        ):
            job_id = response.headers["x-tokenrelay-job-id"]
            with pytest.raises(openai.APIError) as raised:
                async for chunk in await response.parse():
                    got.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
                    if len(got) == 5:
                        await kill_the_worker_running(job_id, log, workers)
            events = await log.until(
                lambda ev: bool(of_type(by_job(ev, job_id), *TERMINAL_EVENT_TYPES)),
                timeout=90,
                what="the job ended",
            )

    mine = by_job(events, job_id)
    ended = Counter(e.type for e in of_type(mine, *TERMINAL_EVENT_TYPES))
    assert ended == Counter({"completed": 1}), ended
    (terminal,) = of_type(mine, "completed")
    assert terminal.attempt == 2, "the killed attempt was not the one that ended"
    first = "".join(e.text for e in of_type(mine, "token") if e.attempt == 1)
    text = "".join(got)
    assert text and first.startswith(text), "what the stream said is the first attempt's text"
    assert f"/v1/jobs/{job_id}/events" in raised.value.message
    assert terminal.content and len(terminal.content) > len(text) / 2


@pytest.mark.timeout(240)
async def test_the_clients_tokens_say_when_a_killed_worker_makes_the_job_start_over(  # type: ignore[no-untyped-def]
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(worker_session_timeout_ms=6000, fake_tokens_per_s=10.0)
    got: list[str] = []
    with two_workers_and_ingest(settings, tmp_path, PUBLIC) as (wa, wb, base):
        workers = {wa.worker_id: wa, wb.worker_id: wb}
        async with (
            AsyncClient(base, api_key="key-alice", give_up_s=60) as client,
            events_reader(settings.kafka_bootstrap, settings.topics.tokens, 3) as log,
        ):
            job = await client.submit("outlive your worker", max_tokens=TOKENS)
            with pytest.raises(StartedOverError) as raised:
                async for text in client.tokens(job.job_id):
                    got.append(text)
                    if len(got) == 5:
                        await kill_the_worker_running(job.job_id, log, workers)
            again = [t async for t in client.tokens(job.job_id, raised.value.last_event_id)]
            events = await log.until(
                lambda ev: bool(of_type(by_job(ev, job.job_id), *TERMINAL_EVENT_TYPES)),
                what="the job ended",
            )

    (terminal,) = of_type(by_job(events, job.job_id), *TERMINAL_EVENT_TYPES)
    assert terminal.type == "completed" and terminal.attempt == 2
    assert raised.value.attempt == 2
    first = "".join(e.text for e in of_type(by_job(events, job.job_id), "token") if e.attempt == 1)
    assert first.startswith("".join(got)), "before the error: the first attempt's text only"
    assert "".join(again) == terminal.content, "from where the error said: the answer, whole"
