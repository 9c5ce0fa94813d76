import asyncio
import time

import pytest

from services.core.limits import ModelLimit
from services.core.rate import Bucket
from services.worker.rate_limit import RateLimiter


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


def test_a_rescaled_bucket_keeps_its_fill_in_proportion() -> None:
    b = Bucket.full(per_minute=60, now=0.0)
    b.take(30, 0.0)
    b.rescale(20, 0.0)
    assert b.level == 10
    assert b.wait_s(11, 0.0) == 3.0  # one more at 20 a minute


async def test_the_fleet_share_scales_every_budget_and_what_is_left() -> None:
    limiter = RateLimiter({"m": ModelLimit(rpm=60, tpm=6_000)}, share=1.0)
    assert await limiter.acquire("m", 3_000) == 0  # half the tokens left, 59 requests
    limiter.set_share(0.5)
    # 1,500 tokens of 3,000 left at half the rate: a 1,500-token job fits, the next does not.
    assert await limiter.acquire("m", 1_500) == 0
    assert limiter.share == 0.5
    waits = [b.wait_s(1_500, time.monotonic()) for b in limiter._buckets.values()]
    assert max(waits) == pytest.approx(30.0, abs=0.1)  # 1,500 tokens at 3,000 a minute


async def test_a_fleet_member_waits_for_its_share_before_its_first_budgeted_call() -> None:
    limiter = RateLimiter({"m": ModelLimit(rpm=60)}, share=None)
    assert await limiter.acquire("other", 10) == 0  # no budget, no wait
    waiting = asyncio.create_task(limiter.acquire("m", 10))
    await asyncio.sleep(0)
    assert not waiting.done()
    limiter.set_share(0.25)
    assert await asyncio.wait_for(waiting, 1) >= 0
    # A bucket made at a quarter: 15 requests at once, then the 16th waits 4 s.
    for _ in range(14):
        await limiter.acquire("m", 10)
    (bucket,) = limiter._buckets.values()
    assert bucket.wait_s(1, time.monotonic()) == pytest.approx(4.0, abs=0.1)


async def test_a_larger_share_raises_the_rate_but_adds_nothing_to_what_is_left() -> None:
    limiter = RateLimiter({"m": ModelLimit(rpm=60)}, share=0.5)
    for _ in range(20):
        assert await limiter.acquire("m", 10) == 0  # 30 at half the rate: 20 taken, 10 left
    limiter.set_share(1.0)  # work moved here from another worker, which keeps its spending
    (bucket,) = limiter._buckets.values()
    now = time.monotonic()
    assert bucket.wait_s(10, now) == pytest.approx(0.0, abs=0.1)  # the 10 left, no more
    assert bucket.wait_s(11, now) == pytest.approx(1.0, abs=0.1)  # then one a second
