"""A running attempt stops at its tenant's budget: the token that would pass it is not sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from schemas.commands import JobCommand
from schemas.events import ErrorKind, Failed, JobEvent, Token
from services.core.prices import Price, Prices
from services.worker.attempt import run_attempt
from services.worker.budget import BudgetMeter, Unabsorbed, meter_for
from services.worker.providers.fake import FakeProvider
from tests.unit.test_fake_provider import command

PRICES = Prices({"fake-priced": Price(input=Decimal(1000), output=Decimal(1000))})
"""A token in or out costs $0.001."""


def command_for(prompt: str, max_tokens: int) -> JobCommand:
    return command(prompt=prompt, max_tokens=max_tokens).model_copy(update={"model": "fake-priced"})


def run(
    command: JobCommand, remaining: float | None, others: Decimal = Decimal(0)
) -> list[JobEvent]:
    events: list[JobEvent] = []

    async def emit(e: JobEvent) -> None:
        events.append(e)

    async def go() -> JobEvent:
        meter = meter_for(command, remaining, PRICES, lambda: others)
        return await run_attempt(
            command, FakeProvider(tokens_per_s=0), emit, "w1", prices=PRICES, meter=meter
        )

    events.append(asyncio.run(go()))
    return events


def test_a_job_stops_at_the_budget_billed_for_what_it_streamed() -> None:
    command = command_for("abcdefgh", max_tokens=500)  # 2 prompt tokens
    events = run(command, remaining=0.05)
    end = events[-1]
    assert isinstance(end, Failed) and end.error_kind is ErrorKind.BUDGET
    assert not end.retryable
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) == end.tokens == 48  # 2 + 48 tokens = $0.050
    assert end.usage is not None and end.usage.completion_tokens == 48
    assert end.cost_usd == 0.05


def test_other_running_jobs_of_the_tenant_take_their_share_first() -> None:
    command = command_for("abcdefgh", max_tokens=500)
    end = run(command, remaining=0.05, others=Decimal("0.02"))[-1]
    assert isinstance(end, Failed) and end.tokens == 28


def test_without_a_budget_the_job_runs_whole() -> None:
    command = command_for("abcdefgh", max_tokens=60)
    end = run(command, remaining=None)[-1]
    assert end.type == "completed"


def test_a_budget_already_spent_calls_no_provider_and_costs_nothing() -> None:
    command = command_for("abcdefgh", max_tokens=60)
    events = run(command, remaining=0.0015)  # less than the prompt's $0.002
    assert [e.type for e in events] == ["started", "failed"]
    assert isinstance(events[-1], Failed) and events[-1].error_kind is ErrorKind.BUDGET
    assert events[-1].cost_usd == 0 and events[-1].tokens == 0


def test_an_ended_jobs_cost_counts_until_the_spend_figure_shows_it() -> None:
    ended = Unabsorbed()
    ended.add("t", Decimal("0.03"), month_now=1.0, month="2026-12")
    assert ended.pending("t", 1.0, "2026-12") == Decimal("0.03")
    ended.add("t", Decimal("0.02"), month_now=1.0, month="2026-12")
    assert ended.pending("t", 1.03, "2026-12") == Decimal("0.02")  # the first one landed
    assert ended.holds("t")
    assert ended.pending("t", 1.05, "2026-12") == 0  # both did
    assert not ended.holds("t")
    assert ended.pending("other", 1.0, "2026-12") == 0 and not ended.holds("other")


def test_one_already_in_the_figure_is_dropped_before_the_next_is_added() -> None:
    ended = Unabsorbed()
    ended.add("t", Decimal("0.03"), month_now=1.0, month="2026-12")
    ended.add("t", Decimal("0.02"), month_now=1.03, month="2026-12")  # the first had landed
    assert ended.pending("t", 1.05, "2026-12") == 0


def test_a_new_month_forgets_what_ended_in_the_last() -> None:
    ended = Unabsorbed()
    ended.add("t", Decimal("0.03"), month_now=9.0, month="2026-12")
    assert ended.pending("t", 0.0, "2027-01") == 0


def test_concurrent_jobs_of_a_tenant_share_what_is_left() -> None:
    meters: list[BudgetMeter] = []

    def others_of(me: list[BudgetMeter]) -> Callable[[], Decimal]:
        return lambda: sum((m.spent() for m in meters if m not in me), Decimal(0))

    async def one(command: JobCommand, out: list[JobEvent]) -> None:
        mine: list[BudgetMeter] = []
        meter = meter_for(command, 0.05, PRICES, others_of(mine))
        assert meter is not None
        mine.append(meter)
        meters.append(meter)

        async def emit(e: JobEvent) -> None:
            out.append(e)

        provider = FakeProvider(tokens_per_s=2000)
        out.append(await run_attempt(command, provider, emit, "w1", prices=PRICES, meter=meter))

    async def both() -> tuple[list[JobEvent], list[JobEvent]]:
        a: list[JobEvent] = []
        b: list[JobEvent] = []
        await asyncio.gather(
            one(command_for("abcdefgh", max_tokens=500), a),
            one(command_for("abcdefgh", max_tokens=500), b),
        )
        return a, b

    a, b = asyncio.run(both())
    ends = [a[-1], b[-1]]
    assert all(isinstance(e, Failed) and e.error_kind is ErrorKind.BUDGET for e in ends)
    total = sum(Decimal(repr(e.cost_usd)) for e in ends if isinstance(e, Failed) and e.cost_usd)
    assert Decimal("0.048") < total <= Decimal("0.05")  # together, within one token of the cap
    assert all(isinstance(e, Failed) and (e.tokens or 0) > 5 for e in ends)  # both ran
