"""Fair queuing across tenants within a priority, caps, read-ahead: ``ReadyQueue``, pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from schemas.jobs import JobRequest, Priority
from schemas.tenants import TenantPolicy
from services.core.ids import new_job_id, now_us
from services.core.prices import load_prices
from services.core.submission import new_submission, publish
from services.core.tenancy import TenantPolicies
from services.worker.fleet_share import local_cap
from services.worker.providers.registry import make_providers
from services.worker.runner import WorkerRunner
from services.worker.scheduling import ReadyQueue
from tests.support.memory_jobs import PARTITIONS, TERMINAL, ended, events, lag, settings
from tests.support.memory_kafka import MemoryKafka

S = 1_000_000
LOW = Priority.LOW


def tenant_of(job: str) -> str:
    return job.split("-", maxsplit=1)[0]


def flood(q: ReadyQueue[str], tenant: str, n: int, priority: Priority = LOW, at: int = 0) -> None:
    for i in range(n):
        q.push(f"{tenant}-{i}", priority, at + i, tenant)


def starts(q: ReadyQueue[str], n: int, now: int = 10 * S, **rules: object) -> list[str]:
    out = []
    for _ in range(n):
        job = q.pop(now, **rules)  # type: ignore[arg-type]
        if job is None:
            break
        out.append(job)
    return out


def test_equal_weights_interleave_whatever_the_first_tenants_backlog() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 1000)
    flood(q, "b", 4, at=5000)  # queued after every one of a's
    first = [tenant_of(j) for j in starts(q, 8)]
    assert first == ["a", "b"] * 4
    assert starts(q, 3) == ["a-4", "a-5", "a-6"], "each tenant stays FIFO"


def test_a_tenant_arriving_behind_a_backlog_starts_next() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 120)
    assert [tenant_of(j) for j in starts(q, 50)] == ["a"] * 50
    flood(q, "b", 4, at=200)
    assert tenant_of(starts(q, 1)[0]) == "b"


def test_weights_three_to_one_give_three_starts_to_one() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 400)
    flood(q, "b", 400)
    weights = {"a": 3.0, "b": 1.0}
    picked = Counter(tenant_of(j) for j in starts(q, 200, weight=weights.__getitem__))
    assert picked == {"a": 150, "b": 50}


def test_weights_are_read_at_each_start() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 400)
    flood(q, "b", 400)
    weights = {"a": 1.0, "b": 1.0}
    assert Counter(tenant_of(j) for j in starts(q, 40, weight=weights.__getitem__)) == {
        "a": 20,
        "b": 20,
    }
    weights["b"] = 4.0
    later = Counter(tenant_of(j) for j in starts(q, 100, weight=weights.__getitem__))
    assert abs(later["b"] - 80) <= 1


def test_a_tenant_back_from_idle_gets_no_burst() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 1000)
    q.push("b-0", LOW, 0, "b")
    assert Counter(tenant_of(j) for j in starts(q, 2)) == {"a": 1, "b": 1}
    starts(q, 100)  # b idle while a runs a hundred
    flood(q, "b", 50, at=2000)
    after = [tenant_of(j) for j in starts(q, 20)]
    assert Counter(after) == {"a": 10, "b": 10}, after
    assert all(after[i] != after[i + 1] for i in range(len(after) - 1)), "turns, not a burst"


def test_a_tenant_at_its_cap_is_skipped_and_the_others_run() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 10)
    flood(q, "b", 10, at=100)
    running: Counter[str] = Counter()
    caps = {"a": 2}

    def may_start(tenant: str) -> bool:
        return running[tenant] < caps.get(tenant, 1000)

    for _ in range(6):
        job = q.pop(10 * S, may_start=may_start)
        assert job is not None
        running[tenant_of(job)] += 1
    assert running == {"a": 2, "b": 4}
    running["a"] -= 1  # one of a's ended
    assert tenant_of(q.pop(10 * S, may_start=may_start) or "") == "a"
    running["a"] += 1
    assert q.pop(10 * S, may_start=lambda t: t != "b" and may_start(t)) is None, "all capped"
    assert q.count(LOW) == 13


def test_a_capped_tenant_earns_no_credit_while_it_waits() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 100)
    flood(q, "b", 100)
    starts(q, 40, may_start=lambda t: t != "a")  # a capped: b runs forty
    after = [tenant_of(j) for j in starts(q, 20)]
    assert after[:2] == ["a", "a"], "back at the clock: one start ahead at most"
    assert after[2:] == ["b", "a"] * 9, after


def test_a_capped_tenants_jobs_make_way_for_a_lower_priority() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 5, priority=Priority.URGENT)
    q.push("b-low", LOW, 10, "b")
    assert q.pop(10 * S, may_start=lambda t: t != "a") == "b-low"


def test_priorities_still_rule_across_tenants() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 3, priority=Priority.LOW)
    flood(q, "b", 2, priority=Priority.NORMAL, at=10)
    flood(q, "c", 1, priority=Priority.URGENT, at=20)
    assert starts(q, 6) == ["c-0", "b-0", "b-1", "a-0", "a-1", "a-2"]


def test_aging_still_wins_and_the_aged_priority_still_takes_turns() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=30)
    flood(q, "a", 10, at=0)  # old lows
    q.push("b-0", LOW, 20 * S, "b")  # a younger low of another tenant
    flood(q, "u", 5, priority=Priority.URGENT, at=31 * S)
    now = 31 * S
    got = starts(q, 6, now=now)
    assert [tenant_of(j) for j in got] == ["a", "u", "b", "u", "a", "u"], (
        "aged lows and fresh urgent work take turns, and so do the aged lane's tenants"
    )
    q2: ReadyQueue[str] = ReadyQueue(aging_s=30)
    flood(q2, "a", 3, at=0)
    flood(q2, "u", 3, priority=Priority.URGENT, at=29 * S)
    assert tenant_of(q2.pop(29 * S) or "") == "u", "not aged yet: urgent first"


def test_the_oldest_job_of_a_capped_tenant_does_not_age_its_priority() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=30)
    q.push("a-old", LOW, 0, "a")
    q.push("u-0", Priority.URGENT, 40 * S, "u")
    assert q.pop(40 * S, may_start=lambda t: t != "a") == "u-0"


def test_discard_keeps_every_other_tenants_jobs_in_order() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 4)
    flood(q, "b", 4, at=10)
    dropped = q.discard(lambda j: j in {"a-1", "b-0", "b-2"})
    assert dropped == ["a-1", "b-0", "b-2"]
    assert len(q) == q.count(LOW) == q.at_least(LOW) == 5
    assert starts(q, 6) == ["a-0", "b-1", "a-2", "b-3", "a-3"]


def test_a_priority_reads_ahead_while_nothing_more_important_waits() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 120)
    assert q.fetchable(limit=4) == {Priority.URGENT, Priority.HIGH, Priority.NORMAL}
    assert q.fetchable(limit=4, readahead=2000) == set(Priority)
    assert q.room(LOW, limit=4, readahead=2000) == 1880
    flood(q, "a", 1880, at=200)
    assert LOW not in q.fetchable(limit=4, readahead=2000), "the read-ahead is full"


def test_buffered_lows_hold_back_no_higher_priority_and_higher_work_stops_lows() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 1999)
    assert q.fetchable(limit=4, readahead=2000) == set(Priority)
    assert q.room(Priority.URGENT, limit=4, readahead=2000) == 2000
    flood(q, "n", 4, priority=Priority.NORMAL, at=3000)
    fetchable = q.fetchable(limit=4, readahead=2000)
    assert LOW not in fetchable, "four normals wait: lows stop reading ahead"
    assert {Priority.URGENT, Priority.HIGH, Priority.NORMAL} <= fetchable
    assert q.fetch_room(limit=4, readahead=2000) == 2000


def test_an_urgent_job_is_fetched_at_once_whatever_is_buffered() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    for priority in Priority:
        flood(q, priority.value, 3000, priority=priority)
    fetchable = q.fetchable(limit=4, readahead=2000)
    assert Priority.URGENT not in fetchable, "urgent itself holds more than both bounds"
    q.discard(lambda j: j.startswith("urgent"))
    assert q.fetchable(limit=4, readahead=2000) == {Priority.URGENT}


def test_a_fleet_wide_cap_is_split_by_partitions_owned_rounding_up() -> None:
    assert local_cap(10, owned=15, total=15) == 10
    assert local_cap(10, owned=8, total=15) == 6
    assert local_cap(10, owned=7, total=15) == 5
    assert local_cap(1, owned=1, total=15) == 1, "a worker with any partition may run one"
    assert local_cap(10, owned=0, total=15) == 0
    workers = [3, 3, 3, 3, 3]
    assert sum(local_cap(4, w, 15) for w in workers) <= 4 + len(workers) - 1


# --- in the worker's loop, on the in-memory Kafka ------------------------------------------


@asynccontextmanager
async def fair_worker(
    kafka: MemoryKafka, tenants: TenantPolicies, **overrides: Any
) -> AsyncIterator[WorkerRunner]:
    s = settings(**overrides)
    runner = WorkerRunner(
        s,
        kafka.producer(),  # type: ignore[arg-type]
        make_providers(s),
        clients=kafka,
        tenants=tenants,
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def submit_as(kafka: MemoryKafka, tenant: str, n: int, **request: Any) -> list[str]:
    s = settings()
    subs = [
        new_submission(
            JobRequest(prompt=f"{tenant} {i}", **request),
            s,
            load_prices(None),
            job_id=new_job_id(),
            tenant=tenant,
            now=now_us(),
        )
        for i in range(n)
    ]
    await publish(kafka.producer(), s.topics, subs)  # type: ignore[arg-type]
    return [sub.job_id for sub in subs]


def spans(kafka: MemoryKafka, jobs: list[str]) -> list[tuple[int, int]]:
    """(started, ended) of each job, from its events' times."""
    ts: dict[str, list[int]] = {}
    for e in events(kafka):
        if e.job_id in jobs and e.type in {"started", *TERMINAL}:
            ts.setdefault(e.job_id, []).append(e.ts)
    return [(t[0], t[-1]) for t in ts.values()]


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


PACED = {"max_tokens": 4, "provider_options": {"tokens_per_s": 100}, "priority": "low"}
"""About 40 ms a job."""


async def test_the_loop_starts_a_second_tenant_next_whatever_the_first_ones_backlog() -> None:
    kafka = MemoryKafka(PARTITIONS)
    async with fair_worker(kafka, TenantPolicies(), worker_concurrency=2) as runner:
        flood_a = await submit_as(kafka, "a", 80, **PACED)
        await kafka.until(lambda: len(runner.ready) >= 60, timeout=5)  # read ahead
        b_from = now_us()
        bs = await submit_as(kafka, "b", 4, **PACED)
        await kafka.until(ended(kafka, bs), timeout=10)
        b_last = max(start for start, _ in spans(kafka, bs))
        a_between = [s for s, _ in spans(kafka, flood_a) if b_from < s < b_last]
        assert len(a_between) <= 4 + 2, f"{len(a_between)} of a's started while b's waited"
        assert len(runner.ready) > 20, "b did not wait for a's backlog"


async def test_the_loop_keeps_a_tenant_to_its_cap_while_others_use_the_slots() -> None:
    kafka = MemoryKafka(PARTITIONS)
    tenants = TenantPolicies()
    tenants.put(TenantPolicy(tenant="a", max_concurrency=1, updated_at=0, by="ops"))
    async with fair_worker(kafka, tenants, worker_concurrency=4):
        a_jobs = await submit_as(kafka, "a", 6, **PACED)
        b_jobs = await submit_as(kafka, "b", 12, **PACED)
        await kafka.until(ended(kafka, a_jobs + b_jobs), timeout=10)
        await kafka.until(lambda: lag(kafka) == 0)
    assert most_at_once(spans(kafka, a_jobs)) == 1
    assert most_at_once(spans(kafka, b_jobs)) >= 3, "b used the slots a could not"


def test_a_read_ahead_of_aged_lows_holds_urgent_work_back_by_one_start_each() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=30)
    flood(q, "a", 2000, at=0)
    flood(q, "u", 16, priority=Priority.URGENT, at=100 * S)
    got = starts(q, 32, now=100 * S)
    assert sum(tenant_of(j) == "u" for j in got) == 16


def test_a_capped_tenants_backlog_leaves_room_to_fetch_the_others() -> None:
    q: ReadyQueue[str] = ReadyQueue(aging_s=60)
    flood(q, "a", 2000, at=0)  # a full read-ahead, all of tenant a
    assert q.room(LOW, limit=8, readahead=2000) == 0
    capped = q.room(LOW, limit=8, readahead=2000, may_start=lambda t: t != "a")
    assert capped == 2000, "a's jobs cannot start: they leave the read-ahead to others"
    assert LOW in q.fetchable(8, 2000, may_start=lambda t: t != "a")


async def test_a_capped_tenants_backlog_beyond_the_read_ahead_does_not_hide_the_others() -> None:
    kafka = MemoryKafka(PARTITIONS)
    tenants = TenantPolicies()
    tenants.put(TenantPolicy(tenant="a", max_concurrency=1, updated_at=0, by="ops"))
    async with fair_worker(kafka, tenants, worker_concurrency=4, worker_readahead=20):
        await submit_as(kafka, "a", 150, **PACED)  # beyond the read-ahead, within the ledger
        b = await submit_as(kafka, "b", 4, **PACED)
        # a runs one job at a time (~40 ms each): draining its backlog first takes ~6 s
        await kafka.until(ended(kafka, b), timeout=3)
