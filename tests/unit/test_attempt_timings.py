"""What a completed attempt reports about its speed and its cost."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from schemas.events import Completed, JobEvent
from services.core.prices import load_prices
from services.core.stats import percentile
from services.worker.attempt import inter_token_latency, run_attempt
from services.worker.providers.fake import FakeProvider
from tests.unit.test_fake_provider import command


def test_percentiles_interpolate_between_neighbours() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == 4.6
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0
    assert percentile([7.0], 99) == 7.0


def test_inter_token_latency_is_over_the_gaps_between_tokens() -> None:
    # gaps of 10 ms nine times and one of 100 ms
    arrivals = [0.0]
    for gap in [0.01] * 9 + [0.1]:
        arrivals.append(arrivals[-1] + gap)
    itl = inter_token_latency(arrivals)
    assert itl is not None
    assert itl.p50 == 10.0
    assert itl.p90 == 19.0  # interpolated between the 9th (10 ms) and the 10th gap (100 ms)
    assert 90.0 < itl.p99 < 100.0
    assert inter_token_latency([1.0]) is None and inter_token_latency([]) is None


async def test_a_completed_attempt_carries_its_timings_and_its_cost(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"fake-1": {"input": 1.5, "output": 6}}}')
    prices = load_prices(path)

    async def emit(_ev: JobEvent) -> None:
        return None

    done = await run_attempt(
        command(max_tokens=20), FakeProvider(tokens_per_s=200), emit, "w", prices=prices
    )
    assert isinstance(done, Completed)
    assert done.itl_ms is not None and done.ttft_ms is not None
    assert 0 < done.itl_ms.p50 <= done.itl_ms.p90 <= done.itl_ms.p99
    assert 2.0 < done.itl_ms.p50 < 50.0  # paced at 200 tokens/s: 5 ms apart
    u = done.usage
    assert Decimal(repr(done.cost_usd)) == prices.cost("fake-1", u.prompt_tokens, 20)
    assert done.cost_usd > 0

    free = await run_attempt(command(max_tokens=5), FakeProvider(tokens_per_s=0), emit, "w")
    assert isinstance(free, Completed) and free.cost_usd == 0.0
