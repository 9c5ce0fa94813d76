"""The aggregator's write policy: lifecycle changes are stored at once, progress once a tick."""

from __future__ import annotations

from schemas.events import Completed, Queued, Started, Token, Usage
from schemas.jobs import Priority
from services.aggregator.processor import JobStates, decode_state, encode_state

W = {"worker_id": "w", "tenant": "acme", "job_id": "j"}
TICK_US = 500_000


def queued() -> Queued:
    return Queued(attempt=0, seq=0, ts=0, priority=Priority.LOW, model="m", provider="fake", **W)


def started(ts: int) -> Started:
    return Started(attempt=1, seq=0, ts=ts, model="m", provider="fake", queue_wait_ms=1.0, **W)


def token(seq: int, ts: int) -> Token:
    return Token(attempt=1, seq=seq, ts=ts, text="x", index=seq, **W)


def test_lifecycle_is_stored_at_once_and_tokens_once_a_tick() -> None:
    store: dict[str, bytes] = {}
    states = JobStates(store.get, tick_s=TICK_US / 1e6)

    def apply(event: object, offset: int) -> bool:
        out = states.apply(event, 0, offset)  # type: ignore[arg-type]
        if out.store:
            store["j"] = encode_state(out.state)
            states.stored(out.state)
        return out.store

    assert apply(queued(), 0) and apply(started(1_000), 1)
    assert apply(token(1, 2_000), 2), "the first token is a lifecycle change"
    assert not apply(token(2, 3_000), 3), "progress within a tick stays in memory"
    assert states.get("j").token_count == 2  # type: ignore[union-attr]
    assert decode_state(store["j"]).token_count == 1
    assert apply(token(3, 2_000 + TICK_US), 4), "a tick after the last stored state"
    done = Completed(
        attempt=1,
        seq=4,
        ts=2_000 + TICK_US + 1,
        content="xxx",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1, completion_tokens=3),
        cost_usd=0.0,
        ttft_ms=1.0,
        duration_ms=2.0,
        tokens_per_s=1.0,
        tokens=3,
        **W,
    )
    assert apply(done, 5)
    assert decode_state(store["j"]).content == "xxx" and not states.hot


def test_a_duplicate_changes_nothing_and_stores_nothing() -> None:
    store: dict[str, bytes] = {}
    states = JobStates(store.get, tick_s=0.5)
    first = states.apply(queued(), 0, 0)
    store["j"] = encode_state(first.state)
    again = states.apply(queued(), 0, 0)
    assert (again.changed, again.store) == (False, False)


def test_giving_partitions_away_forgets_their_hot_states() -> None:
    store: dict[str, bytes] = {}
    states = JobStates(store.get, tick_s=60)
    for offset, event in enumerate([queued(), started(1), token(1, 2), token(2, 3)]):
        out = states.apply(event, 0, offset)
        if out.store:
            store["j"] = encode_state(out.state)
            states.stored(out.state)
    assert "j" in states.hot, "the second token waits for its tick"
    states.forget({1})
    assert "j" in states.hot
    states.forget({0})
    assert not states.hot
    assert states.get("j").token_count == 1, "the new owner replays from the stored state"  # type: ignore[union-attr]


def test_a_late_queued_is_stored_at_once() -> None:
    """What ``queued`` says (priority, model, batch) must survive a crash even when its
    copy came after the run's: it is stored, not kept in memory until the next tick."""
    store: dict[str, bytes] = {}
    states = JobStates(store.get, tick_s=TICK_US / 1e6)
    for offset, event in enumerate([started(1_000), token(1, 2_000), queued()]):
        out = states.apply(event, 0, offset)
        if out.store:
            store["j"] = encode_state(out.state)
            states.stored(out.state)
    assert out.store and not states.hot
    assert decode_state(store["j"]).priority is Priority.LOW
