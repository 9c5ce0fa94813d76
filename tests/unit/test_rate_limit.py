from services.core.rate import Bucket


def test_a_bucket_refills_at_its_rate_per_minute() -> None:
    b = Bucket.full(per_minute=60, now=0.0)
    assert b.wait_s(60, 0.0) == 0
    b.take(60, 0.0)
    assert b.wait_s(1, 0.0) == 1.0
    assert b.wait_s(30, 0.0) == 30.0
    assert b.wait_s(30, 10.0) == 20.0


def test_usage_above_the_estimate_is_paid_back_before_the_next_request() -> None:
    b = Bucket.full(per_minute=600, now=0.0)
    b.take(600 + 100, 0.0)
    assert b.wait_s(100, 0.0) == 20.0


def test_a_request_larger_than_the_budget_waits_for_a_full_bucket_not_forever() -> None:
    b = Bucket.full(per_minute=100, now=0.0)
    b.take(100, 0.0)
    assert b.wait_s(10_000, 0.0) == 60.0
