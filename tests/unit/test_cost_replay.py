"""Cost replay's pure parts: repricing by longest prefix to the nano-dollar, the sums by model
and tenant, which price tables and windows are refused, the page query, and the CLI's tables."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from pydantic import ValidationError
from rich.console import Console

from schemas.api import CostReplay
from services.analytics.cost_replay import (
    CostOverflowError,
    CostReplayRequest,
    FinishedJob,
    Summary,
    answer,
    page_query,
    price_problem,
    replay,
)
from services.cli_cost import replay_summary, replay_tables, usd
from services.core.prices import PriceFile, Prices

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
NEW = {
    "fake-": {"input": 0.3, "output": 1.2},
    "fake-beta": {"input": "4.1234567", "output": "9.87654321"},
    "tiny": {"input": "0.0015", "output": "0.0025"},
}


def _prices(table: dict[str, object]) -> Prices:
    return Prices(PriceFile.model_validate({"models": table}).models)


def _job(n: int, tenant: str, model: str, prompt: int, completion: int, cost: str) -> FinishedJob:
    return FinishedJob(f"job-{n}", 1, tenant, model, T0, prompt, completion, Decimal(cost))


def _by_hand(input_usd: str, output_usd: str, prompt: int, completion: int) -> Decimal:
    usd = (prompt * Decimal(input_usd) + completion * Decimal(output_usd)) / Decimal(10**6)
    return usd.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)


JOBS = [
    _job(1, "alice", "fake-alpha", 7, 40, "0.000250500"),
    _job(2, "alice", "fake-beta-1", 3, 17, "0.000140000"),
    _job(3, "bob", "fake-alpha", 11, 5, "0.000046500"),
    _job(4, "bob", "fake-beta-1", 123_457, 98_765, "1.234567891"),
    _job(5, "bob", "other", 10, 10, "0.000001000"),
]


def test_each_job_is_repriced_by_its_longest_listed_prefix_to_the_nano_dollar() -> None:
    costs = replay(_prices(NEW), JOBS, Summary())
    assert costs == [
        _by_hand("0.3", "1.2", 7, 40),
        _by_hand("4.1234567", "9.87654321", 3, 17),  # "fake-beta" beats "fake-"
        _by_hand("0.3", "1.2", 11, 5),
        _by_hand("4.1234567", "9.87654321", 123_457, 98_765),
        Decimal(0),  # not priced by the table
    ]
    assert costs[3] == Decimal("1.484526384")  # 1.48452638394755 rounded


def test_rounding_is_half_even_like_the_workers() -> None:
    tiny = _prices(NEW)
    one, three = _job(1, "a", "tiny", 1, 0, "0"), _job(2, "a", "tiny", 0, 1, "0")
    # 1.5e-9 → 2e-9 and 2.5e-9 → 2e-9: half to even, as Prices.cost rounds at completion.
    assert replay(tiny, [one, three], Summary()) == [Decimal("2e-9"), Decimal("2e-9")]


def test_the_sums_by_model_and_by_tenant_add_up_to_the_total() -> None:
    prices = _prices(NEW)
    summary = Summary()
    costs = replay(prices, JOBS, summary)
    out = answer(summary, "r1", T0, None, T0 + dt.timedelta(hours=1))
    CostReplay.model_validate(out)  # the shape the OpenAPI documents

    replayed, recorded = sum(costs), sum(j.recorded_cost for j in JOBS)
    assert Decimal(repr(out["replayed_usd"])) == replayed
    assert Decimal(repr(out["recorded_usd"])) == recorded
    assert Decimal(repr(out["difference_usd"])) == replayed - recorded
    assert out["jobs"] == len(JOBS) and out["unpriced_models"] == ["other"]
    for key in ("model", "tenant"):
        rows = out[f"by_{key}"]
        assert sum(r["jobs"] for r in rows) == len(JOBS)
        assert sum(Decimal(repr(r["replayed_usd"])) for r in rows) == replayed, key
        assert sum(Decimal(repr(r["recorded_usd"])) for r in rows) == recorded, key
        assert sum(r["prompt_tokens"] for r in rows) == sum(j.prompt_tokens for j in JOBS)
    beta = next(r for r in out["by_model"] if r["model"] == "fake-beta-1")
    assert Decimal(repr(beta["replayed_usd"])) == costs[1] + costs[3]
    assert Decimal(repr(beta["recorded_usd"])) == Decimal("1.234707891")
    assert out["by_model"][0]["model"] == "fake-beta-1", "dearest first"
    assert [r["tenant"] for r in out["by_tenant"]] == ["bob", "alice"]


def test_a_cost_beyond_the_cost_column_is_refused() -> None:
    dear = _prices({"m": {"input": 1_000_000, "output": 1_000_000}})
    with pytest.raises(CostOverflowError, match="job-1"):
        replay(dear, [_job(1, "a", "m", 2_000_000_000, 2_000_000_000, "0")], Summary())


def test_the_request_takes_a_whole_price_file_with_exact_prices() -> None:
    body = CostReplayRequest.model_validate(
        {
            "prices": {"schema": "tokenrelay.Prices/1", "note": "q3", "models": NEW},
            "since": "2026-03-01T12:00:00+02:00",
        }
    )
    assert body.prices.models["fake-"].input == Decimal("0.3")
    assert body.prices.models["fake-beta"].output == Decimal("9.87654321")
    assert body.since == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC) and body.until is None


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"prices": {"models": {"m": {"input": -1, "output": 1}}}}, ("prices", "models", "m")),
        ({"prices": {"models": {"m": {"input": "x", "output": 1}}}}, ("prices", "models", "m")),
        ({"prices": {"models": {"m": {"input": 1}}}}, ("prices", "models", "m", "output")),
        ({"prices": {"models": {"m": {"input": 1, "output": 1, "x": 1}}}}, ("prices", "models")),
        ({"prices": {}}, ("prices", "models")),
        ({"prices": {"models": NEW}, "since": 1767225600}, ("since",)),
        ({"prices": {"models": NEW}, "until": "yesterday"}, ("until",)),
        ({"prices": {"models": NEW}, "extra": 1}, ("extra",)),
    ],
)
def test_a_malformed_request_names_its_field(body: dict[str, object], where: tuple[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        CostReplayRequest.model_validate(body)
    loc = caught.value.errors()[0]["loc"]
    assert loc[: len(where)] == where, loc


def test_a_price_table_that_cannot_be_replayed_is_named() -> None:
    assert price_problem(PriceFile.model_validate({"models": NEW})) is None
    assert price_problem(PriceFile.model_validate({"models": {}})) == (
        "prices.models",
        "the price table lists no model",
    )
    typo = PriceFile.model_validate({"models": {"gpt-x": {"input": 1, "output": 25_000_000}}})
    problem = price_problem(typo)
    assert problem is not None and problem[0] == "prices.models.gpt-x.output"


def test_pages_follow_the_tables_order_from_the_last_row_read() -> None:
    until = T0 + dt.timedelta(days=1)
    sql, params = page_query(None, until, None, 500)
    assert "finished_at >= " not in sql and "LIMIT 500" in sql
    assert "ORDER BY tenant, finished_at, job_id, attempt" in sql
    assert params == {"until": until}
    last = {"tenant": "bob", "finished_us": 1, "job_id": "j", "attempt": 2}
    sql, params = page_query(T0, until, last, 500)
    assert "(tenant, finished_at, job_id, attempt) > (" in sql
    assert params == {"until": until, "since": T0, **last}


def test_the_command_shows_both_tables_and_a_summary() -> None:
    summary = Summary()
    replay(_prices(NEW), JOBS, summary)
    out = answer(summary, "r1", T0, None, T0)
    console = Console(record=True, width=120)
    for table in replay_tables(out):
        console.print(table)
    text = console.export_text()
    assert "by model" in text and "by tenant" in text and "fake-beta-1" in text
    assert "1.484706656" in text  # fake-beta-1: exact, not rounded to cents
    assert replay_summary(out).startswith("replay r1: 5 jobs, recorded $1.23")
    assert usd(0.0000215) == "0.0000215" and usd(12.5) == "12.50"
    assert usd(-0.25, signed=True) == "-0.25" and usd(1234.0, signed=True) == "+1,234.00"
