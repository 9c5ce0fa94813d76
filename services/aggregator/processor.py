"""From one event to what the aggregator stores: the reducer plus a write policy.

Writes to the changelog grow with a job's lifecycle, not with its tokens: a
state is stored when the job is first seen, changes status, attempt or
submission, gets its first token, or when ``tick`` has passed (by event time)
since the job's last stored state. In between, the newest state lives in memory
(``hot``) and reads see it; ``token`` events carry the absolute count and
terminal events their own, so a state that was never stored is rebuilt exactly
by the next event after a crash. The content is stored once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas.events import JobEvent
from schemas.state import JobState
from services.aggregator.reducer import reduce
from services.core.serde import encode


def encode_state(state: JobState) -> bytes:
    return encode(state)


def decode_state(raw: bytes) -> JobState:
    return JobState.model_validate_json(raw)


def lifecycle_changed(old: JobState, new: JobState) -> bool:
    """A change a brief shows: status, attempt, submission, the first token, or the job's
    ``queued`` learnt late (its copy on the lifecycle topic may come after the run's)."""
    return (
        old.status,
        old.attempt,
        old.submissions,
        old.first_token_at is None,
        old.queued_at is None,
    ) != (
        new.status,
        new.attempt,
        new.submissions,
        new.first_token_at is None,
        new.queued_at is None,
    )


def should_store(old: JobState | None, new: JobState, stored_at: int | None, tick_us: int) -> bool:
    """Whether ``new`` goes to the changelog now. ``stored_at``: ``updated_at`` last stored."""
    if old is None or stored_at is None or lifecycle_changed(old, new):
        return True
    return new.updated_at - stored_at >= tick_us


@dataclass(frozen=True, slots=True)
class Outcome:
    state: JobState
    changed: bool
    store: bool


class JobStates:
    """The newest state of each job: stored (through ``load``) or ``hot`` in memory."""

    def __init__(self, load: Callable[[str], bytes | None], tick_s: float) -> None:
        self._load = load
        self._tick_us = int(tick_s * 1e6)
        self.hot: dict[str, JobState] = {}
        self._stored_at: dict[str, int] = {}

    def get(self, job_id: str) -> JobState | None:
        state = self.hot.get(job_id)
        if state is not None:
            return state
        raw = self._load(job_id)
        return decode_state(raw) if raw is not None else None

    def apply(self, event: JobEvent, partition: int, offset: int | None) -> Outcome:
        """Reduce ``event`` read on ``partition``; ``offset`` is where it lies on the tokens
        topic (None: not known, as for a lifecycle copy without ``tokens-offset``)."""
        old = self.get(event.job_id)
        new = reduce(old, event, partition=partition, offset=offset)
        if new is old:
            return Outcome(new, changed=False, store=False)
        if event.job_id in self.hot:
            stored_at: int | None = self._stored_at[event.job_id]
        else:
            stored_at = old.updated_at if old is not None else None
        if should_store(old, new, stored_at, self._tick_us):
            self.stored(new)
            return Outcome(new, changed=True, store=True)
        self.hot[event.job_id] = new
        self._stored_at.setdefault(event.job_id, stored_at or new.updated_at)
        return Outcome(new, changed=True, store=False)

    def stored(self, state: JobState) -> None:
        """``state`` is now the stored one: nothing of the job is left in memory."""
        self.hot.pop(state.job_id, None)
        self._stored_at.pop(state.job_id, None)

    def forget(self, partitions: set[int]) -> None:
        """Drop what memory holds for partitions given away; their new owner replays."""
        for job_id, state in list(self.hot.items()):
            if state.partition in partitions:
                del self.hot[job_id]
                self._stored_at.pop(job_id, None)
