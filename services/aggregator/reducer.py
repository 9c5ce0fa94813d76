"""The job state machine: ``reduce(state, event) -> state``, pure and idempotent.

Events reach the aggregator at least once, in order per job (one partition), and
after a crash a suffix of them again. The state remembers the highest event it
applied — ``(attempt, seq)`` for a run, ``submissions`` for the ``queued``
events of attempt 0 — and anything at or below that is a duplicate and changes
nothing (``schemas.rules``). So any history with any duplicates reduces to the
same state.

* A newer attempt resets the older one's progress (tokens, first token, error).
* A finished job (succeeded, failed, cancelled) is final: later run events are
  ignored, except after an admin retry, which publishes a ``queued`` with a
  higher submission number and puts the job back in the queue. A ``queued`` of
  the same submission that arrives late (on ``tokenrelay.lifecycle`` it travels
  beside the command, not before it) only fills in what it says.
* ``token_count`` is the highest ``index`` seen and, at the end, the terminal
  event's own count: the state is exact even if some progress was never stored.
* ``attempt_start_offset`` is where a watcher without a cursor starts: the
  ``queued`` event of the current submission while its first attempt runs
  (so a late watcher sees what an early one saw), else the current attempt's
  first event.
"""

from __future__ import annotations

from typing import Any

from schemas.events import (
    Cancelled,
    Completed,
    Failed,
    JobEvent,
    Queued,
    Retrying,
    Started,
    Token,
)
from schemas.rules import NONE_SEEN, TERMINAL_STATUS, already_seen
from schemas.state import JobState, JobStatus

_RESET_ON_NEW_ATTEMPT: dict[str, Any] = {
    "token_count": 0,
    "first_token_at": None,
    "finished_at": None,
    "retry_at": None,
    "error_kind": None,
    "error_message": None,
    "attempt_start_offset": None,
}
_RESET_ON_RESUBMIT: dict[str, Any] = {
    **_RESET_ON_NEW_ATTEMPT,
    "content": None,
    "parsed": None,
    "finish_reason": None,
    "usage": None,
    "cost_usd": None,
    "ttft_ms": None,
    "duration_ms": None,
    "tokens_per_s": None,
    "cancelled_by": None,
}


def is_duplicate(state: JobState | None, event: JobEvent) -> bool:
    """Whether ``state`` already reflects ``event`` (or a later one of the job): the
    protocol's duplicate rule (``schemas.rules.already_seen``) on what ``state`` applied."""
    if state is None:
        return False
    submission = state.submissions if state.queued_at is not None else NONE_SEEN
    return already_seen(
        event.attempt, event.seq, submission=submission, run=(state.attempt, state.seq)
    )


def reduce(
    state: JobState | None,
    event: JobEvent,
    *,
    partition: int | None = None,
    offset: int | None = None,
) -> JobState:
    """The job's state after ``event``; ``state`` itself when the event changes nothing.

    ``partition`` and ``offset`` say where the event was read; they become the
    resume cursor of the attempt the event starts.
    """
    if is_duplicate(state, event):
        assert state is not None
        return state
    if isinstance(event, Queued):
        return _queued(state, event, partition, offset)
    if state is None:
        state = _unseen(event, partition)
    elif state.status.finished:
        return state
    changes: dict[str, Any] = {"seq": event.seq, "updated_at": max(state.updated_at, event.ts)}
    if event.attempt > state.attempt:
        first_run = state.status is JobStatus.QUEUED and state.attempt_start_offset is not None
        changes |= _RESET_ON_NEW_ATTEMPT | {
            "attempt": event.attempt,
            "attempt_start_offset": state.attempt_start_offset if first_run else offset,
        }
    changes |= _apply(state, event)
    if partition is not None:
        changes["partition"] = partition
    return state.model_copy(update=changes)


def _queued(
    state: JobState | None, event: Queued, partition: int | None, offset: int | None
) -> JobState:
    fresh = JobState.queued(event, partition, offset)
    if state is None:
        return fresh
    fields: dict[str, Any] = fresh.model_dump(
        include={"priority", "model", "provider", "batch_id", "estimated_cost_usd", "max_tokens"}
    ) | {"submissions": event.seq, "queued_at": event.ts}
    if state.status.finished and event.seq > state.submissions:
        fields |= _RESET_ON_RESUBMIT | {"status": JobStatus.QUEUED, "attempt_start_offset": offset}
    # else: the submission's `queued` seen after its run began or even ended (its lifecycle
    # copy came late, or an earlier one was missed): keep what the run says.
    fields["updated_at"] = max(state.updated_at, event.ts)
    if partition is not None:
        fields["partition"] = partition
    return state.model_copy(update=fields)


def _unseen(event: JobEvent, partition: int | None) -> JobState:
    """A job whose ``queued`` we never saw (it expired, or was cleaned)."""
    return JobState(
        job_id=event.job_id,
        tenant=event.tenant,
        status=JobStatus.QUEUED,
        partition=partition,
        updated_at=event.ts,
    )


def _apply(state: JobState, event: JobEvent) -> dict[str, Any]:
    if isinstance(event, Started):
        return {
            "status": JobStatus.RUNNING,
            "model": event.model,
            "provider": event.provider,
            "started_at": event.ts,
            "queue_wait_ms": event.queue_wait_ms,
        }
    if isinstance(event, Token):
        tokens_before = state.token_count if event.attempt == state.attempt else 0
        first = state.first_token_at if event.attempt == state.attempt else None
        return {
            "status": JobStatus.RUNNING,
            "token_count": max(tokens_before, event.index),
            "first_token_at": first if first is not None else event.ts,
        }
    if isinstance(event, Retrying):
        return {
            "status": JobStatus.RETRYING,
            "error_kind": event.error_kind,
            "error_message": event.message,
            "retry_at": event.not_before,
        }
    if isinstance(event, Completed):
        return {
            "status": _ended(event),
            "finished_at": event.ts,
            "content": event.content,
            "parsed": event.parsed,
            "finish_reason": event.finish_reason,
            "usage": event.usage,
            "cost_usd": event.cost_usd,
            "ttft_ms": event.ttft_ms,
            "duration_ms": event.duration_ms,
            "tokens_per_s": event.tokens_per_s,
            **_final_count(state, event),
        }
    if isinstance(event, Failed):
        return {
            "status": _ended(event),
            "finished_at": event.ts,
            "error_kind": event.error_kind,
            "error_message": event.message,
            **({"usage": event.usage} if event.usage is not None else {}),
            **({"cost_usd": event.cost_usd} if event.cost_usd is not None else {}),
            **_final_count(state, event),
        }
    if isinstance(event, Cancelled):
        return {
            "status": _ended(event),
            "finished_at": event.ts,
            "cancelled_by": event.by,
            "error_message": event.reason,
            **_final_count(state, event),
        }
    raise TypeError(f"no rule for {type(event).__name__}")  # Queued is handled above


def _ended(event: Completed | Failed | Cancelled) -> JobStatus:
    return JobStatus(TERMINAL_STATUS[event.type])


def _final_count(state: JobState, event: Completed | Failed | Cancelled) -> dict[str, Any]:
    if event.tokens is None:
        return {}
    return {"token_count": event.tokens}
