"""Admission by budgets and quotas, and a tenant's usage, as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.tenants import TenantLimits, TenantSpend
from services.core.quotas import TenantRates, refusal, remaining_usd, resets_at, usage
from services.core.tenancy import SpendBook, Spent


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


NOW = us("2026-12-31T22:00:00")


def test_budgets_and_quotas_reset_at_the_next_utc_midnight_and_month() -> None:
    midnight, month = resets_at(NOW)
    assert midnight.isoformat() == "2027-01-01T00:00:00+00:00"
    assert month.isoformat() == "2027-01-01T00:00:00+00:00"
    midnight, month = resets_at(us("2026-02-10T05:00:00"))
    assert (midnight.day, month.month, month.day) == (11, 3, 1)


def test_no_limits_admit_everything() -> None:
    assert refusal(TenantLimits(), Spent(usd_day=1e6, tokens_day=10**9), NOW) is None


def test_a_spent_daily_budget_is_a_402_with_figures_and_reset() -> None:
    err = refusal(TenantLimits(budget_usd_per_day=0.05), Spent(usd_day=0.05), NOW)
    assert err is not None and (err.status, err.code) == (402, "budget_exceeded")
    assert "$0.05 today of its $0.05 daily" in err.message
    assert "2027-01-01T00:00:00Z" in err.message
    assert err.headers["Retry-After"] == "7200"
    assert refusal(TenantLimits(budget_usd_per_day=0.05), Spent(usd_day=0.049), NOW) is None


def test_a_spent_monthly_budget_is_a_402_too() -> None:
    err = refusal(TenantLimits(budget_usd_per_month=10), Spent(usd_month=10.5), NOW)
    assert err is not None and err.status == 402 and "monthly" in err.message


def test_the_days_tokens_used_up_are_a_429() -> None:
    err = refusal(TenantLimits(tokens_per_day=100), Spent(tokens_day=100), NOW)
    assert err is not None and (err.status, err.code) == (429, "quota_exceeded")


def test_what_is_left_is_the_smaller_of_day_and_month() -> None:
    limits = TenantLimits(budget_usd_per_day=5, budget_usd_per_month=6)
    assert remaining_usd(limits, Spent(usd_day=1, usd_month=4)) == 2
    assert remaining_usd(limits, Spent(usd_day=7, usd_month=7)) == 0
    assert remaining_usd(TenantLimits(), Spent(usd_day=7)) is None


def test_usage_shows_spend_limits_and_what_remains() -> None:
    body = usage("dave", TenantLimits(tokens_per_day=1000), Spent(0.5, 400, 2.0, NOW), NOW)
    assert body["day"] == "2026-12-31" and body["month"] == "2026-12"
    assert body["remaining"] == {"usd_day": None, "tokens_day": 600, "usd_month": None}
    assert body["spent"] == {"usd_day": 0.5, "tokens_day": 400, "usd_month": 2.0}


def test_rpm_admits_a_minutes_worth_then_refuses_until_it_refills() -> None:
    rates = TenantRates()
    assert [rates.admit("t", 3, 1, 0.0) for _ in range(3)] == [None, None, None]
    refused = rates.admit("t", 3, 1, 1.0)
    assert refused is not None and refused.status == 429
    assert int(refused.headers["Retry-After"]) == 19  # a third of a minute, less the second
    assert rates.admit("t", 3, 1, 21.0) is None
    too_big = rates.admit("t", 3, 5, 100.0)  # a batch beyond the whole rate never fits
    assert too_big is not None and (too_big.status, too_big.field) == (422, "jobs")
    assert rates.admit("other", 3, 1, 1.0) is None  # each tenant its own bucket
    assert rates.admit("t", None, 1000, 1.0) is None  # the limit lifted


def test_a_refusal_takes_nothing() -> None:
    rates = TenantRates()
    assert rates.refusal("k", 2, 1, 0.0) is None
    assert rates.refusal("k", 2, 1, 0.0) is None  # looked twice, nothing taken
    rates.take("k", 2, 2, 0.0)
    refused = rates.refusal("k", 2, 1, 0.0, what="this key")
    assert refused is not None and refused.message.startswith("this key may submit 2 jobs")


def spend(day: str, usd_day: float, usd_month: float, as_of: int = 1) -> TenantSpend:
    return TenantSpend(
        tenant="t",
        day=day,
        usd_day=usd_day,
        tokens_day=0,
        usd_month=usd_month,
        jobs_day=0,
        as_of=as_of,
    )


def test_yesterdays_spend_counts_for_the_month_only_and_last_months_for_nothing() -> None:
    book = SpendBook()
    book.put(spend("2026-12-30", 3.0, 9.0))
    assert book.spent("t", NOW) == Spent(usd_month=9.0, as_of=1)
    book.put(spend("2026-12-31", 1.0, 10.0, as_of=2))
    assert book.spent("t", NOW).usd_day == 1.0
    book.put(spend("2026-12-30", 3.0, 9.0, as_of=3))  # an older day never replaces a newer
    assert book.spent("t", NOW).usd_day == 1.0
    assert book.spent("t", us("2027-01-01T00:00:01")) == Spent()
    assert book.spent("nobody", NOW) == Spent()
