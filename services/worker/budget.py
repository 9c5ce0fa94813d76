"""Stopping a running job at its tenant's budget. Pure: the runner passes what was spent.

When an attempt starts, the worker takes what its tenant may still spend (the
smaller of what is left of its day's and month's budget, from
``tokenrelay.spend``). The attempt meters its cost as tokens arrive: the
prompt's (estimated at characters / 4, as admission does, since a provider
reports usage only at the end) plus each completion token at the model's
price, and at each token it also counts what the tenant's other jobs on this
worker have spent meanwhile, running or ended. A job whose prompt alone would
pass the budget is not sent to the provider (it ends ``failed``, ``budget``,
costing nothing). The token that would pass it is not sent: the attempt ends
``failed`` with kind ``budget``, its tokens so far kept and billed.

A job that ended here keeps counting (``Unabsorbed``) until the tenant's spend
on ``tokenrelay.spend`` has grown by its cost since it ended: a second or two
later, when its row reached ClickHouse and the figure came back. So jobs of a
tenant run one after another on a worker never pass its budget.

What is not exact: jobs of one tenant running at once on different workers see
each other's spend only once it reaches ``tokenrelay.spend``, so together they
can pass the budget by what they spend meanwhile. One worker's jobs, one at a
time or at once, stop at the cap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from schemas.commands import JobCommand
from schemas.events import Usage
from services.core.prices import Prices, prompt_tokens


def _nothing() -> Decimal:
    return Decimal(0)


@dataclass
class BudgetMeter:
    """What one attempt may spend and what it has spent.

    ``may_spend`` is what the tenant had left when the attempt started; ``others``
    says, at each token, what the tenant's other jobs on this worker have spent or
    ended with since (so concurrent jobs of one tenant on one worker share the rest).
    """

    model: str
    may_spend: Decimal
    prompt_tokens: int
    prices: Prices
    others: Callable[[], Decimal] = _nothing
    tokens: int = 0

    def cost(self, completion_tokens: int) -> Decimal:
        return self.prices.cost(self.model, self.prompt_tokens, completion_tokens)

    def admits_prompt(self) -> bool:
        """Whether the prompt alone fits: if not, the provider is not called at all."""
        return self.cost(0) + self.others() <= self.may_spend

    def admits_next(self) -> bool:
        """Whether one more completion token keeps the tenant within what it may spend."""
        return self.cost(self.tokens + 1) + self.others() <= self.may_spend

    def count(self) -> None:
        self.tokens += 1

    def spent(self) -> Decimal:
        return self.cost(self.tokens)

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.tokens)


def meter_for(
    command: JobCommand,
    remaining_usd: float | None,
    prices: Prices,
    others: Callable[[], Decimal] = _nothing,
) -> BudgetMeter | None:
    """The attempt's meter, or None when its tenant has no budget."""
    if remaining_usd is None:
        return None
    may_spend = max(Decimal(0), Decimal(repr(remaining_usd)))
    return BudgetMeter(command.model, may_spend, prompt_tokens(command.request), prices, others)


@dataclass
class _Ended:
    cost: Decimal
    month_then: float
    """The tenant's spend this month, as known when the job ended."""
    month: str


class Unabsorbed:
    """Costs of jobs that ended here but may not be in ``tokenrelay.spend`` yet, per tenant.

    An ended job's cost is counted until the tenant's month figure has grown by at
    least that much since the job ended (growth from other workers' jobs may drop it
    early: a bound, not an exact ledger), or the month changed.
    """

    def __init__(self) -> None:
        self._by_tenant: dict[str, list[_Ended]] = {}

    def add(self, tenant: str, cost: Decimal, month_now: float, month: str) -> None:
        """A job of ``tenant`` ended here costing ``cost``; ``month_now``: the tenant's
        spend this month as known now."""
        if cost > 0:
            self.pending(tenant, month_now, month)  # what is in the figure already goes first
            self._by_tenant.setdefault(tenant, []).append(_Ended(cost, month_now, month))

    def holds(self, tenant: str) -> bool:
        """Whether any ended job of ``tenant`` is still counted here (``pending`` may be > 0)."""
        return bool(self._by_tenant.get(tenant))

    def pending(self, tenant: str, month_now: float, month: str) -> Decimal:
        """What ended here and is not yet in the tenant's spend figure.

        Entries are in the order their jobs ended, and each was added after dropping
        those already in the figure, so the growth since an entry's end must cover it
        and every entry before it still kept.
        """
        ended = self._by_tenant.get(tenant)
        if not ended:
            return Decimal(0)
        keep: list[_Ended] = []
        owed = Decimal(0)
        for e in ended:
            owed += e.cost
            absorbed = Decimal(repr(month_now)) - Decimal(repr(e.month_then)) >= owed
            if e.month == month and not absorbed:
                keep.append(e)
        if keep:
            self._by_tenant[tenant] = keep
        else:
            del self._by_tenant[tenant]
        return sum((e.cost for e in keep), Decimal(0))
