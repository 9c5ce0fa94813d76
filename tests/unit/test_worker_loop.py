"""The worker's loop over an in-memory Kafka: intake, run, settle, cancel, retry, hand-over.

The same loop runs against a real broker in tests/integration/worker; here the
wire is ``MemoryKafka``, so each case takes milliseconds to a second.
"""

from __future__ import annotations

from collections import Counter

from schemas.control import Cancel
from schemas.jobs import Priority
from services.core.ids import now_us
from services.core.serde import encode
from tests.support.memory_jobs import (
    PARTITIONS,
    TERMINAL,
    ended,
    events,
    lag,
    settings,
    submit,
    worker,
)
from tests.support.memory_kafka import MemoryKafka


async def test_each_job_streams_in_order_ends_once_and_its_command_is_committed() -> None:
    kafka = MemoryKafka(PARTITIONS)
    async with worker(kafka):
        jobs = []
        for priority in Priority:
            jobs += await submit(kafka, 3, priority=priority, max_tokens=20)
        await kafka.until(ended(kafka, jobs))
        await kafka.until(lambda: lag(kafka) == 0)
    for job in jobs:
        seen = events(kafka, job)
        assert [e.type for e in seen[:2]] == ["queued", "started"]
        assert [e.type for e in seen[2:-1]] == ["token"] * 20
        assert seen[-1].type == "completed"
        assert [e.seq for e in seen if e.attempt == 1] == list(range(22))
    assert Counter(e.type for e in events(kafka))["completed"] == len(jobs)


async def test_an_aborted_transaction_is_tried_again_and_no_job_ends_twice() -> None:
    kafka = MemoryKafka(PARTITIONS)
    kafka.fail_transactions(3)
    async with worker(kafka) as runner:
        jobs = await submit(kafka, 4, max_tokens=5)
        await kafka.until(ended(kafka, jobs))
        await kafka.until(lambda: lag(kafka) == 0)
        assert kafka.faults_left == 0, "every abort happened"
        assert runner.committer.stalled_reason(after_s=0) is None, "commits succeed again"
    completed = Counter(e.job_id for e in events(kafka) if e.type == "completed")
    assert completed == dict.fromkeys(jobs, 1)


async def test_a_cancel_on_the_control_topic_ends_a_running_job_cancelled() -> None:
    kafka = MemoryKafka(PARTITIONS)
    s = settings()
    async with worker(kafka):
        (job,) = await submit(kafka, max_tokens=10_000, provider_options={"tokens_per_s": 200})
        await kafka.until(lambda: any(e.type == "token" for e in events(kafka, job)))
        cancel = Cancel(job_id=job, ts=now_us(), by="acme", reason="changed my mind")
        await kafka.producer().send(s.topics.control, job, encode(cancel))
        await kafka.until(ended(kafka, [job]), timeout=5)
        await kafka.until(lambda: lag(kafka) == 0)
    last = events(kafka, job)[-1]
    assert last.type == "cancelled"
    assert sum(e.type == "token" for e in events(kafka, job)) < 10_000


async def test_a_retryable_failure_runs_again_as_the_next_attempt() -> None:
    kafka = MemoryKafka(PARTITIONS)
    options = {"tokens_per_s": 0, "fail_with": "rate_limited", "fail_after": 2, "fail_attempts": 1}
    async with worker(kafka):
        (job,) = await submit(kafka, max_tokens=5, provider_options=options, max_attempts=3)
        await kafka.until(ended(kafka, [job]))
        await kafka.until(lambda: lag(kafka) == 0)
    seen = events(kafka, job)
    retrying = next(e for e in seen if e.type == "retrying")
    assert retrying.error_kind == "rate_limited" and retrying.next_attempt == 2
    assert [(e.attempt, e.type) for e in seen if e.type != "token"] == [
        (0, "queued"),
        (1, "started"),
        (1, "retrying"),
        (2, "started"),
        (2, "completed"),
    ]


async def test_a_second_worker_takes_half_the_partitions_and_no_job_runs_twice() -> None:
    kafka = MemoryKafka(PARTITIONS)
    async with worker(kafka, "w1"):
        first = await submit(kafka, 10, max_tokens=50, provider_options={"tokens_per_s": 500})
        async with worker(kafka, "w2"):
            second = await submit(kafka, 10, max_tokens=5)
            await kafka.until(ended(kafka, first + second), timeout=20)
            await kafka.until(lambda: lag(kafka) == 0)
    runs = Counter(e.job_id for e in events(kafka) if e.type in TERMINAL)
    assert runs == dict.fromkeys(first + second, 1)
    assert {e.worker_id for e in events(kafka) if e.type == "completed"} == {"w1", "w2"}
