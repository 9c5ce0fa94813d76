import random

from services.worker.backoff import Outcome, backoff_s, decide


def test_backoff_grows_exponentially_under_a_cap_with_full_jitter() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)]:
        samples = [backoff_s(attempt, 1.0, 30.0, rng) for _ in range(500)]
        assert min(samples) >= 0 and max(samples) <= ceiling
        assert max(samples) > ceiling * 0.9, "jitter spans the whole interval"


def test_retry_after_sets_a_floor() -> None:
    d = decide(retryable=True, attempt=1, max_attempts=3, retry_after_s=7.0, base_s=1.0, max_s=30.0)
    assert d.outcome is Outcome.RETRY
    assert d.delay_s >= 7.0


def test_non_retryable_fails_at_once_and_the_last_attempt_is_exhausted() -> None:
    kw = {"retry_after_s": None, "base_s": 1.0, "max_s": 30.0}
    assert decide(retryable=False, attempt=1, max_attempts=3, **kw).outcome is Outcome.FAIL
    assert decide(retryable=True, attempt=3, max_attempts=3, **kw).outcome is Outcome.EXHAUSTED
    assert decide(retryable=True, attempt=2, max_attempts=3, **kw).outcome is Outcome.RETRY
