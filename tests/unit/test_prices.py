"""Prices: the shipped file, another one, cost at completion and the estimate at submission."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from schemas.jobs import JobRequest
from services.core.errors import ConfigError
from services.core.prices import load_prices


def test_the_shipped_prices_cover_openais_models_and_their_dated_snapshots() -> None:
    prices = load_prices()
    mini = prices.price("gpt-4o-mini")
    assert mini is not None and (mini.input, mini.output) == (Decimal("0.15"), Decimal("0.6"))
    assert prices.price("gpt-4o-mini-2024-07-18") == mini  # longest listed prefix
    assert prices.price("gpt-4o-2024-08-06") == prices.price("gpt-4o")
    assert prices.price("fake-1") is None


def test_cost_is_exact_to_a_nano_dollar() -> None:
    prices = load_prices()
    # 1,000 prompt tokens at $0.15/M + 500 completion tokens at $0.60/M
    assert prices.cost("gpt-4o-mini", 1000, 500) == Decimal("0.000450000")
    assert prices.cost("gpt-4o-mini", 1, 1) == Decimal("0.000000750")
    assert prices.cost_usd("no-such-model", 10**6, 10**6) == 0.0


def test_another_price_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"fake-1": {"input": 1.5, "output": 6}}}')
    prices = load_prices(path)
    assert prices.cost("fake-1", 2, 3) == Decimal("0.000021000")
    assert prices.price("gpt-4o") is None


@pytest.mark.parametrize(
    "text", ["not json", '{"models": {"m": {"input": -1, "output": 1}}}', '{"x": 1}']
)
def test_a_bad_price_file_is_a_config_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_prices(path)


def test_the_estimate_counts_the_prompt_and_max_tokens() -> None:
    prices = load_prices()
    req = JobRequest(prompt="x" * 4000, system="y" * 400, max_tokens=1000)
    # 4,400 characters ≈ 1,100 tokens in, 1,000 out
    expected = float(prices.cost("gpt-4o-mini", 1100, 1000))
    assert prices.estimate_usd("gpt-4o-mini", req, 256) == expected
    no_max = JobRequest(prompt="abcd")
    assert prices.estimate_usd("gpt-4o-mini", no_max, 256) == float(
        prices.cost("gpt-4o-mini", 1, 256)
    )
