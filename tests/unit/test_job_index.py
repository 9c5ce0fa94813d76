"""What an aggregator instance derives from its jobs: lists, batch summaries, queue figures."""

from __future__ import annotations

from schemas.jobs import Priority
from schemas.state import JobState, JobStatus
from services.aggregator.index import (
    BatchPart,
    Brief,
    JobFilter,
    JobIndex,
    decode_cursor,
    encode_cursor,
    newest,
    queue_parts,
    summarize_batch,
    summarize_queues,
)

S = 1_000_000  # one second in µs


def state(
    job: str,
    status: JobStatus = JobStatus.QUEUED,
    *,
    tenant: str = "acme",
    queued_at: int = 0,
    batch: str | None = None,
    priority: Priority = Priority.NORMAL,
    started_at: int | None = None,
    finished_at: int | None = None,
    cost: float | None = None,
) -> JobState:
    return JobState(
        job_id=job,
        tenant=tenant,
        status=status,
        priority=priority,
        batch_id=batch,
        queued_at=queued_at,
        started_at=started_at,
        finished_at=finished_at,
        cost_usd=cost,
        updated_at=queued_at,
    )


def test_pages_are_newest_first_and_a_cursor_continues_after_the_last() -> None:
    briefs = [Brief.of(state(f"j{i}", queued_at=i * S)) for i in range(5)]
    first = newest(briefs, JobFilter(), 2, None)
    assert [b.job_id for b in first] == ["j4", "j3"]
    after = decode_cursor(encode_cursor(first[-1].order))
    assert [b.job_id for b in newest(briefs, JobFilter(), 2, after)] == ["j2", "j1"]


def test_filters_match_tenant_status_priority_and_batch() -> None:
    briefs = [
        Brief.of(state("a", tenant="alice", batch="b1")),
        Brief.of(state("b", JobStatus.RUNNING, tenant="bob", priority=Priority.URGENT)),
        Brief.of(state("c", JobStatus.FAILED, tenant="alice")),
    ]

    def ids(f: JobFilter) -> set[str]:
        return {b.job_id for b in newest(briefs, f, 10, None)}

    assert ids(JobFilter(tenant="alice")) == {"a", "c"}
    assert ids(JobFilter(status=JobStatus.RUNNING)) == {"b"}
    assert ids(JobFilter(priority=Priority.URGENT)) == {"b"}
    assert ids(JobFilter(batch_id="b1")) == {"a"}


def test_a_cursor_that_is_not_ours_is_a_value_error() -> None:
    for cursor in ("", "not-base64!", encode_cursor((1, "x"))[:-2] + "zz", "W10"):
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            assert "not a cursor" in str(exc)
        else:
            raise AssertionError(cursor)


def test_the_index_follows_puts_removes_and_rebuilds_per_partition() -> None:
    index = JobIndex()
    assert index.rebuild(0, [state("a", batch="b"), state("b", batch="b")]) == 2
    index.rebuild(1, [state("c", batch="b")])
    index.put(2, state("ignored"))  # not an owned partition
    assert {b.job_id for b in index.batch_members("b")} == {"a", "b", "c"}
    index.remove(0, "a")
    index.drop(1)
    assert {b.job_id for b in index.batch_members("b")} == {"b"}
    assert index.partitions == {0}
    index.remove(0, "b")
    assert index.batch_members("b") == []


def test_a_batch_adds_up_from_its_parts() -> None:
    one = BatchPart.of(
        [
            Brief.of(
                state(
                    "a",
                    JobStatus.SUCCEEDED,
                    batch="b",
                    started_at=10 * S,
                    finished_at=12 * S,
                    cost=0.25,
                )
            ),
            Brief.of(state("b", JobStatus.RETRYING, batch="b", queued_at=1 * S)),
        ]
    )
    two = BatchPart.of([Brief.of(state("c", JobStatus.RUNNING, batch="b", started_at=11 * S))])
    assert one is not None and two is not None and BatchPart.of([]) is None
    summary = summarize_batch("b", [one, two], paused=False, now_us=20 * S)
    assert summary is not None
    assert summary.counts.model_dump() == {
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert (summary.total, summary.progress_pct, summary.status) == (3, 33.33, "running")
    assert summary.eta_s == 20.0, "1 done in 10 s since the first start: 2 more take 20 s"
    assert summary.cost_usd == 0.25 and summary.finished_at is None
    assert summarize_batch("b", [], paused=False, now_us=0) is None


def test_a_batch_status_says_how_it_ended_or_that_it_is_paused() -> None:
    def status(*statuses: JobStatus, paused: bool = False) -> str:
        part = BatchPart.of([Brief.of(state(f"j{i}", s)) for i, s in enumerate(statuses)])
        assert part is not None
        summary = summarize_batch("b", [part], paused=paused, now_us=S)
        assert summary is not None
        return summary.status

    assert status(JobStatus.SUCCEEDED, JobStatus.SUCCEEDED) == "succeeded"
    assert status(JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED) == "failed"
    assert status(JobStatus.SUCCEEDED, JobStatus.CANCELLED) == "cancelled"
    assert status(JobStatus.QUEUED, JobStatus.QUEUED) == "queued"
    assert status(JobStatus.QUEUED, JobStatus.QUEUED, paused=True) == "paused"
    assert status(JobStatus.SUCCEEDED, JobStatus.QUEUED) == "running"


def test_queue_figures_sum_over_instances_with_the_oldest_wait() -> None:
    mine = queue_parts(
        [
            Brief.of(state("a", queued_at=5 * S, priority=Priority.HIGH)),
            Brief.of(state("b", JobStatus.RETRYING, queued_at=3 * S, priority=Priority.HIGH)),
            Brief.of(state("c", JobStatus.RUNNING, priority=Priority.HIGH)),
            Brief.of(state("d", JobStatus.SUCCEEDED, priority=Priority.LOW)),
        ]
    )
    theirs = queue_parts([Brief.of(state("e", queued_at=4 * S, priority=Priority.HIGH))])
    as_json = [{p.value: v for p, v in part.items()} for part in (mine, theirs)]
    queues = {q.priority: q for q in summarize_queues(as_json, now_us=10 * S)}
    assert [q.priority for q in summarize_queues(as_json, 0)] == list(Priority)
    high = queues[Priority.HIGH]
    assert (high.queued, high.running, high.oldest_queued_at, high.oldest_wait_s) == (
        3,
        1,
        3 * S,
        7.0,
    )
    assert (queues[Priority.LOW].queued, queues[Priority.LOW].oldest_wait_s) == (0, None)
