from schemas.jobs import Priority
from services.worker.scheduling import DelayQueue, ReadyQueue

S = 1_000_000


def test_the_most_important_job_runs_first_then_fifo() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    q.push("low-1", Priority.LOW, 1)
    q.push("normal-1", Priority.NORMAL, 2)
    q.push("urgent-1", Priority.URGENT, 3)
    q.push("normal-2", Priority.NORMAL, 4)
    assert [q.pop(10), q.pop(10), q.pop(10), q.pop(10), q.pop(10)] == [
        "urgent-1",
        "normal-1",
        "normal-2",
        "low-1",
        None,
    ]


def test_a_job_older_than_the_aging_bound_outranks_fresh_urgent_work() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=30)
    q.push("old-low", Priority.LOW, 0)
    q.push("urgent", Priority.URGENT, 29 * S)
    assert q.pop(29 * S) == "urgent"
    q.push("urgent-2", Priority.URGENT, 31 * S)
    assert q.pop(31 * S) == "old-low"


def test_lower_topics_stop_fetching_once_enough_better_work_waits() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    assert q.fetchable(limit=2) == set(Priority)
    q.push("n1", Priority.NORMAL, 0)
    q.push("n2", Priority.NORMAL, 0)
    assert q.fetchable(limit=2) == {Priority.URGENT, Priority.HIGH, Priority.LOW}
    q.push("l1", Priority.LOW, 0)
    assert q.fetchable(limit=2) == {Priority.URGENT, Priority.HIGH}, "low holds one already"


def test_discard_drops_matching_jobs() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    q.push("a", Priority.LOW, 0)
    q.push("b", Priority.LOW, 1)
    q.discard(lambda j: j == "a")
    assert len(q) == 1
    assert q.pop(2) == "b"


def test_discard_returns_the_dropped_jobs_most_important_first() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    q.push("low-x", Priority.LOW, 0)
    q.push("urgent-x", Priority.URGENT, 5)
    q.push("normal-keep", Priority.NORMAL, 1)
    q.push("normal-x", Priority.NORMAL, 2)
    assert q.discard(lambda j: j.endswith("-x")) == ["urgent-x", "normal-x", "low-x"]
    assert q.pop(10) == "normal-keep"


def test_delayed_jobs_come_due_in_time_order() -> None:
    d: DelayQueue[str] = DelayQueue()
    d.push("late", 20)
    d.push("soon", 10)
    assert d.due(5) == []
    assert d.due(15) == ["soon"]
    assert d.due(25) == ["late"]
    assert len(d) == 0


def test_discarded_delayed_jobs_are_returned_soonest_first() -> None:
    d: DelayQueue[str] = DelayQueue()
    d.push("late-x", 30)
    d.push("keep", 20)
    d.push("soon-x", 10)
    assert d.discard(lambda j: j.endswith("-x")) == ["soon-x", "late-x"]
    assert d.due(100) == ["keep"]
