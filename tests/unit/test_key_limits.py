"""Per-key request limits: a minute's worth at once, then one per 60/rate seconds."""

from __future__ import annotations

from services.core.rate import KeyLimits, key_id


def test_a_key_gets_a_minutes_worth_then_waits() -> None:
    limits = KeyLimits(per_minute=6)
    assert [limits.admit("a", 0.0) for _ in range(6)] == [None] * 6
    assert limits.admit("a", 0.0) == 10, "one more fits in 60/6 s"
    assert limits.admit("b", 0.0) is None, "another key has its own bucket"
    assert limits.admit("a", 10.0) is None
    assert limits.admit("a", 10.0) == 10


def test_a_refused_request_is_not_counted() -> None:
    limits = KeyLimits(per_minute=60)
    for _ in range(60):
        limits.admit("a", 0.0)
    for _ in range(100):
        assert limits.admit("a", 0.5) == 1
    assert limits.admit("a", 1.0) is None


def test_forgotten_callers_start_afresh_and_memory_stays_bounded() -> None:
    limits = KeyLimits(per_minute=1, max_callers=3)
    for caller in "abcd":
        assert limits.admit(caller, 0.0) is None
    assert limits.admit("a", 0.0) is None, "a was forgotten when d came"
    assert limits.admit("d", 0.0) == 60


def test_key_ids_do_not_reveal_keys() -> None:
    assert key_id("secret-key") == key_id("secret-key")
    assert "secret" not in key_id("secret-key") and len(key_id("secret-key")) == 16
