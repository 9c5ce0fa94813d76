"""``tokenrelay.lifecycle``: the copies a job's writers put beside its events, and the ticks.

Through the worker's loop and ingest's publish on an in-memory Kafka: every event
but the tokens is copied, byte for byte, to the same partition number; of the
tokens only the first and one per tick; ``queued`` and ``started`` name their
offsets on the tokens topic. So a job of 2,000 tokens costs a lifecycle reader
what a job of 10 does.
"""

from __future__ import annotations

from schemas.events import Token
from services.core.ids import now_us
from services.core.lifecycle import copy_headers, tokens_offset
from services.worker.ticks import ProgressTicks
from tests.support.memory_jobs import PARTITIONS, ended, settings, submit, worker
from tests.support.memory_kafka import MemoryKafka


def token(index: int, ts: int) -> Token:
    return Token(
        job_id="j", attempt=1, seq=index, ts=ts, worker_id="w", tenant="t", text="x", index=index
    )


def test_the_first_token_is_a_tick_then_one_per_tick_by_event_time() -> None:
    ticks = ProgressTicks(0.5)
    t0 = now_us()
    due = [ticks.due(token(i, t0 + i * 100_000)) for i in range(1, 13)]  # one every 0.1 s
    assert due == [True, False, False, False, False, True, False, False, False, False, True, False]


def test_the_tokens_offset_header_goes_and_comes_back() -> None:
    trace = [("traceparent", b"00-abc-def-01")]
    headers = copy_headers(trace, 42)
    assert headers == [*trace, ("tokens-offset", b"42")]
    assert tokens_offset(headers) == 42
    assert copy_headers(trace, None) is trace
    assert tokens_offset(trace) is None and tokens_offset(None) is None
    assert tokens_offset([("tokens-offset", b"not a number")]) is None


async def test_copies_mirror_the_lifecycle_and_stay_few_whatever_the_token_count() -> None:
    kafka = MemoryKafka(PARTITIONS)
    topics = settings().topics
    async with worker(kafka):
        short = (await submit(kafka, 1, max_tokens=10))[0]
        long = (await submit(kafka, 1, max_tokens=2000))[0]
        await kafka.until(ended(kafka, [short, long]))

    def of(topic: str, job: str) -> list:  # type: ignore[type-arg]
        return [r for r in kafka.records(topic) if r.key == job.encode()]

    for job, n in ((short, 10), (long, 2000)):
        stream, copies = of(topics.tokens, job), of(topics.lifecycle, job)
        assert len(stream) == n + 3, "queued, started, the tokens, completed"
        by_value = {r.value: r for r in stream}
        assert all(c.value in by_value for c in copies), "each copy is one of its events"
        assert {c.partition for c in copies} == {stream[0].partition}
        kinds = [c.value.split(b'"type":"')[1].split(b'"')[0].decode() for c in copies]
        assert kinds[:2] == ["queued", "started"] and kinds[-1] == "completed"
        assert kinds.count("token") >= 1, "the first token is a tick"
        for copy, kind in zip(copies[:2], kinds[:2], strict=True):
            assert tokens_offset(copy.headers) == by_value[copy.value].offset, kind
        assert all(tokens_offset(c.headers) is None for c in copies[2:])
    short_copies, long_copies = len(of(topics.lifecycle, short)), len(of(topics.lifecycle, long))
    assert long_copies <= short_copies + 2, (short_copies, long_copies)
