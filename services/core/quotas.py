"""A tenant's quotas and budgets at admission, and its usage against its limits. Pure.

At admission (``POST /v1/jobs``, ``/v1/batches``, ``/v1/chat/completions``):

* **402 ``budget_exceeded``** when the tenant has spent its USD budget of the UTC
  day or month, with the figures and when the budget resets;
* **429 ``quota_exceeded``** when it has used its tokens of the day, or
  submitted its jobs per minute (``rpm``, a token bucket per tenant in this
  process: with N ingest processes a tenant may submit up to N times rpm), with
  ``Retry-After``.

What was spent comes from ``tokenrelay.spend`` (``SpendBook``): jobs count once
they have finished and reached ClickHouse, a second or two after their end. So
admission alone lets a tenant start several jobs on its last cents; the workers
stop a running job at the budget (``services/worker/budget.py``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.tenants import TenantLimits
from services.core.errors import ApiError
from services.core.rate import Bucket
from services.core.tenancy import Spent, utc_day


def resets_at(now_us: int) -> tuple[datetime, datetime]:
    """The next UTC midnight and the first instant of the next UTC month."""
    now = datetime.fromtimestamp(now_us / 1e6, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return midnight, next_month


def usd(amount: float) -> str:
    """``$0.05`` for 0.05: a figure as its float prints, never in exponent notation."""
    return f"${Decimal(repr(amount)).normalize():f}"


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _left(limit: float | None, used: float) -> float | None:
    return None if limit is None else max(0.0, limit - used)


def remaining_usd(limits: TenantLimits, spent: Spent) -> float | None:
    """USD the tenant may still spend now: the smaller of its day's and month's; None
    without a budget."""
    left = [
        x
        for x in (
            _left(limits.budget_usd_per_day, spent.usd_day),
            _left(limits.budget_usd_per_month, spent.usd_month),
        )
        if x is not None
    ]
    return min(left) if left else None


def usage(tenant: str, limits: TenantLimits, spent: Spent, now_us: int) -> dict[str, object]:
    """The body of ``GET /v1/tenants/{tenant}/usage``."""
    day, month = utc_day(now_us)
    midnight, next_month = resets_at(now_us)
    tokens_left = _left(limits.tokens_per_day, spent.tokens_day)
    return {
        "tenant": tenant,
        "day": day,
        "month": month,
        "spent": {
            "usd_day": spent.usd_day,
            "tokens_day": spent.tokens_day,
            "usd_month": spent.usd_month,
        },
        "limits": limits.model_dump(include=set(TenantLimits.model_fields)),
        "remaining": {
            "usd_day": _left(limits.budget_usd_per_day, spent.usd_day),
            "tokens_day": None if tokens_left is None else int(tokens_left),
            "usd_month": _left(limits.budget_usd_per_month, spent.usd_month),
        },
        "day_resets_at": iso(midnight),
        "month_resets_at": iso(next_month),
        "as_of": spent.as_of or None,
    }


def refusal(limits: TenantLimits, spent: Spent, now_us: int) -> ApiError | None:
    """Why a tenant may not submit now (budgets, then tokens of the day), or None."""
    midnight, next_month = resets_at(now_us)
    to_midnight = max(1, math.ceil((midnight.timestamp() * 1e6 - now_us) / 1e6))
    to_month = max(1, math.ceil((next_month.timestamp() * 1e6 - now_us) / 1e6))
    day_budget, month_budget = limits.budget_usd_per_day, limits.budget_usd_per_month
    if day_budget is not None and spent.usd_day >= day_budget:
        return ApiError(
            402,
            "budget_exceeded",
            f"the tenant spent {usd(spent.usd_day)} today of its {usd(day_budget)} daily "
            f"budget; it resets at {iso(midnight)}",
            headers={"Retry-After": str(to_midnight)},
        )
    if month_budget is not None and spent.usd_month >= month_budget:
        return ApiError(
            402,
            "budget_exceeded",
            f"the tenant spent {usd(spent.usd_month)} this month of its {usd(month_budget)} "
            f"monthly budget; it resets at {iso(next_month)}",
            headers={"Retry-After": str(to_month)},
        )
    tokens = limits.tokens_per_day
    if tokens is not None and spent.tokens_day >= tokens:
        return ApiError(
            429,
            "quota_exceeded",
            f"the tenant used {spent.tokens_day} tokens today of its {tokens} per day; "
            f"the quota resets at {iso(midnight)}",
            headers={"Retry-After": str(to_midnight)},
        )
    return None


class TenantRates:
    """Jobs per minute per tenant (and per run-time key): a bucket each, rescaled when the
    ``rpm`` changes. ``refusal`` looks, ``take`` counts: a submission checks every bucket
    it is under before it takes from any."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}

    def _bucket(self, who: str, rpm: int, now: float) -> Bucket:
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = self._buckets[who] = Bucket.full(rpm, now)
        elif bucket.per_minute != rpm:
            bucket.rescale(rpm, now)
        return bucket

    def refusal(
        self, who: str, rpm: int | None, jobs: int, now: float, what: str = "the tenant"
    ) -> ApiError | None:
        """Why ``jobs`` more jobs of ``who`` (a tenant, or ``key:<id>``) do not fit now: a
        429 with Retry-After, or a 422 for more than a minute's worth; None if they fit."""
        if rpm is None:
            self._buckets.pop(who, None)
            return None
        if jobs > rpm:
            return ApiError(
                422,
                "too_many_jobs",
                f"a batch of {jobs} jobs is more than {what}'s {rpm} jobs per minute: split it",
                "jobs",
            )
        wait = self._bucket(who, rpm, now).wait_s(jobs, now)
        if wait > 0:
            return ApiError(
                429,
                "quota_exceeded",
                f"{what} may submit {rpm} jobs per minute; {jobs} more do not fit now",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return None

    def take(self, who: str, rpm: int | None, jobs: int, now: float) -> None:
        if rpm is not None:
            self._bucket(who, rpm, now).take(jobs, now)

    def admit(
        self, who: str, rpm: int | None, jobs: int, now: float, what: str = "the tenant"
    ) -> ApiError | None:
        """``refusal``, and ``take`` when there is none."""
        refused = self.refusal(who, rpm, jobs, now, what)
        if refused is None:
            self.take(who, rpm, jobs, now)
        return refused
