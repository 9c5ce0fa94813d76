"""What one aggregator instance knows about the jobs of the partitions it owns.

The jobs table is the only state that is stored (changelogged). Batch counts,
queue figures and job lists are derived from it here, per partition, and rebuilt
from the table when a partition is assigned, so they are exact by construction:
a replayed event that does not change a job's state cannot change a count.
(A counter table of its own, updated at least once, would count replays twice.)

Each instance answers for its own partitions; ``views`` sums the parts.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from schemas.jobs import Priority
from schemas.state import (
    BatchStatus,
    BatchSummary,
    JobState,
    JobStatus,
    PriorityQueue,
    StatusCounts,
)


@dataclass(frozen=True, slots=True)
class Brief:
    """The few fields of a job that filters, lists and sums need."""

    job_id: str
    tenant: str
    status: JobStatus
    priority: Priority | None
    batch_id: str | None
    queued_at: int
    started_at: int | None
    finished_at: int | None
    cost_usd: float

    @classmethod
    def of(cls, s: JobState) -> Brief:
        return cls(
            job_id=s.job_id,
            tenant=s.tenant,
            status=s.status,
            priority=s.priority,
            batch_id=s.batch_id,
            queued_at=s.queued_at if s.queued_at is not None else s.updated_at,
            started_at=s.started_at,
            finished_at=s.finished_at,
            cost_usd=s.cost_usd or 0.0,
        )

    @property
    def order(self) -> tuple[int, str]:
        """Newest first: larger is newer."""
        return (self.queued_at, self.job_id)


@dataclass
class PartitionIndex:
    jobs: dict[str, Brief] = field(default_factory=dict)
    batches: dict[str, set[str]] = field(default_factory=dict)

    def put(self, brief: Brief) -> None:
        self.jobs[brief.job_id] = brief
        if brief.batch_id is not None:
            self.batches.setdefault(brief.batch_id, set()).add(brief.job_id)

    def remove(self, job_id: str) -> None:
        brief = self.jobs.pop(job_id, None)
        if brief is not None and brief.batch_id is not None:
            members = self.batches.get(brief.batch_id, set())
            members.discard(job_id)
            if not members:
                self.batches.pop(brief.batch_id, None)


class JobIndex:
    """Briefs of the jobs in the partitions this instance owns, by partition."""

    def __init__(self) -> None:
        self._parts: dict[int, PartitionIndex] = {}

    @property
    def partitions(self) -> set[int]:
        return set(self._parts)

    def rebuild(self, partition: int, states: Iterable[JobState]) -> int:
        part = self._parts[partition] = PartitionIndex()
        for s in states:
            part.put(Brief.of(s))
        return len(part.jobs)

    def drop(self, partition: int) -> None:
        self._parts.pop(partition, None)

    def put(self, partition: int, state: JobState) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.put(Brief.of(state))

    def remove(self, partition: int, job_id: str) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.remove(job_id)

    def briefs(self) -> Iterator[tuple[int, Brief]]:
        for p, part in self._parts.items():
            for b in part.jobs.values():
                yield p, b

    def batch_members(self, batch_id: str) -> list[Brief]:
        return [
            part.jobs[j] for part in self._parts.values() for j in part.batches.get(batch_id, ())
        ]


# --- lists -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    tenant: str | None = None
    status: JobStatus | None = None
    priority: Priority | None = None
    batch_id: str | None = None

    def matches(self, b: Brief) -> bool:
        return (
            (self.tenant is None or b.tenant == self.tenant)
            and (self.status is None or b.status is self.status)
            and (self.priority is None or b.priority is self.priority)
            and (self.batch_id is None or b.batch_id == self.batch_id)
        )


def encode_cursor(order: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(order))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The position after which a page starts; ``ValueError`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, job_id = orjson.loads(raw)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError("not a cursor from this API") from exc
    if isinstance(ts, int) and isinstance(job_id, str):
        return ts, job_id
    raise ValueError("not a cursor from this API")


def newest(
    briefs: Iterable[Brief], filt: JobFilter, limit: int, after: tuple[int, str] | None
) -> list[Brief]:
    """The ``limit`` newest matching briefs older than ``after``, newest first."""
    chosen = (b for b in briefs if filt.matches(b) and (after is None or b.order < after))
    return heapq.nlargest(limit, chosen, key=lambda b: b.order)


# --- batches ---------------------------------------------------------------------

_COUNTED_AS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RETRYING: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


@dataclass
class BatchPart:
    """One instance's share of a batch; parts add up to the whole."""

    tenant: str
    counts: dict[str, int]
    cost_usd: float
    created_at: int | None
    first_started_at: int | None
    last_finished_at: int | None

    @classmethod
    def of(cls, members: list[Brief]) -> BatchPart | None:
        if not members:
            return None
        counts = dict.fromkeys(StatusCounts.model_fields, 0)
        for b in members:
            counts[_COUNTED_AS[b.status]] += 1
        started = [b.started_at for b in members if b.started_at is not None]
        finished = [b.finished_at for b in members if b.finished_at is not None]
        return cls(
            tenant=members[0].tenant,
            counts=counts,
            cost_usd=sum(b.cost_usd for b in members),
            created_at=min(b.queued_at for b in members),
            first_started_at=min(started) if started else None,
            last_finished_at=max(finished) if finished else None,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "counts": self.counts,
            "cost_usd": self.cost_usd,
            "created_at": self.created_at,
            "first_started_at": self.first_started_at,
            "last_finished_at": self.last_finished_at,
        }


def _min(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarize_batch(
    batch_id: str, parts: list[BatchPart], paused: bool, now_us: int
) -> BatchSummary | None:
    """The whole batch from its parts; None if no part knows it."""
    if not parts:
        return None
    counts = StatusCounts(**{k: sum(p.counts[k] for p in parts) for k in StatusCounts.model_fields})
    total = sum(sum(p.counts.values()) for p in parts)
    done = counts.succeeded + counts.failed + counts.cancelled
    first_start = _min(p.first_started_at for p in parts)
    last_finish = _max(p.last_finished_at for p in parts)
    eta: float | None = None
    if done == total:
        eta = 0.0
    elif done and first_start is not None and now_us > first_start:
        rate = done / ((now_us - first_start) / 1e6)
        eta = round((total - done) / rate, 1)
    return BatchSummary(
        batch_id=batch_id,
        tenant=parts[0].tenant,
        status=_batch_status(counts, total, paused),
        counts=counts,
        total=total,
        progress_pct=round(100.0 * done / total, 2),
        eta_s=eta,
        cost_usd=round(sum(p.cost_usd for p in parts), 9),
        created_at=_min(p.created_at for p in parts),
        finished_at=last_finish if done == total else None,
    )


def _batch_status(counts: StatusCounts, total: int, paused: bool) -> BatchStatus:
    done = counts.succeeded + counts.failed + counts.cancelled
    if done == total:
        if counts.failed:
            return "failed"
        return "cancelled" if counts.cancelled else "succeeded"
    if paused:
        return "paused"
    return "running" if counts.running or done else "queued"


# --- queues ----------------------------------------------------------------------


def queue_parts(briefs: Iterable[Brief]) -> dict[Priority, dict[str, int | None]]:
    """Per priority: queued and running counts and the oldest queued time."""
    out: dict[Priority, dict[str, int | None]] = {
        p: {"queued": 0, "running": 0, "oldest_queued_at": None} for p in Priority
    }
    for b in briefs:
        if b.priority is None:
            continue
        q = out[b.priority]
        if b.status in (JobStatus.QUEUED, JobStatus.RETRYING):
            q["queued"] = (q["queued"] or 0) + 1
            oldest = q["oldest_queued_at"]
            q["oldest_queued_at"] = b.queued_at if oldest is None else min(oldest, b.queued_at)
        elif b.status is JobStatus.RUNNING:
            q["running"] = (q["running"] or 0) + 1
    return out


def summarize_queues(
    parts: list[dict[str, dict[str, int | None]]], now_us: int
) -> list[PriorityQueue]:
    out = []
    for p in Priority:
        mine = [part[p.value] for part in parts if p.value in part]
        oldest = _min(m["oldest_queued_at"] for m in mine)
        out.append(
            PriorityQueue(
                priority=p,
                queued=sum(m["queued"] or 0 for m in mine),
                running=sum(m["running"] or 0 for m in mine),
                oldest_queued_at=oldest,
                oldest_wait_s=round((now_us - oldest) / 1e6, 3) if oldest is not None else None,
            )
        )
    return out
