"""Cost replay: what finished jobs would have cost under another price table.

``POST /v1/analytics/cost-replay`` (admin) reads the ``jobs`` rows of a window
in pages, prices each row's recorded usage with ``Prices.cost`` (the rule the
workers use: a model's price is that of its longest listed prefix, rounded
half-even to a nano-dollar), writes one ``cost_replays`` row per job under a
new replay id, and answers the sums by model and by tenant beside the recorded
ones. The pricing runs here, not in SQL, so that a replay can never disagree
with what a worker would have charged; each page is one bounded query on the
API's session and one insert. ``jobs`` is only read: recorded costs stay as
they were.

The decisions (which price is valid, what a replay adds up to) are pure and
tested without ClickHouse; ``run`` is the I/O around them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.analytics.clickhouse import ClickHouse
from services.analytics.queries import utc
from services.analytics.window import Instant
from services.core.prices import PriceFile, Prices

log = logging.getLogger(__name__)

TABLE = "cost_replays"
PAGE_ROWS = 10_000
"""Job rows read, priced and inserted at a time (at most the API session's row budget)."""
MAX_PRICE = Decimal(1_000_000)
"""USD per million tokens a replayed price may be; above it a typo is likelier than a price."""
MAX_COST = Decimal("999999999.999999999")
"""The largest cost a ``Decimal(18, 9)`` column holds."""

COLUMNS = (
    "replay_id",
    "replayed_at",
    "job_id",
    "attempt",
    "tenant",
    "model",
    "finished_at",
    "prompt_tokens",
    "completion_tokens",
    "recorded_cost",
    "replayed_cost",
)


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        # pydantic reports a ValueError as a validation error; a TypeError would be a 500.
        raise ValueError(  # noqa: TRY004
            "an ISO 8601 time as a string is expected, like 2026-01-31T12:00:00Z"
        )
    return value


BodyInstant = Annotated[Instant, BeforeValidator(_text)]
"""A time in a JSON body: ``Instant``, and only as text (a bare number is not a time)."""


class CostReplayRequest(BaseModel):
    """The body of ``POST /v1/analytics/cost-replay``."""

    model_config = ConfigDict(extra="forbid")

    prices: PriceFile = Field(
        description="A price table of the shape of a `TOKENRELAY_PRICES` file: "
        '`{"models": {"<model or prefix>": {"input": <USD per 1M prompt tokens>, '
        '"output": <USD per 1M completion tokens>}}}`.'
    )
    since: BodyInstant | None = Field(
        default=None, description="Jobs finished at or after this time; default: the first."
    )
    until: BodyInstant | None = Field(
        default=None, description="Jobs finished before this time; default: now."
    )


def price_problem(prices: PriceFile) -> tuple[str, str] | None:
    """Why a price table cannot be replayed, as ``(field, message)``; None if it can."""
    if not prices.models:
        return "prices.models", "the price table lists no model"
    for name, price in prices.models.items():
        for side in ("input", "output"):
            value: Decimal = getattr(price, side)
            if value > MAX_PRICE:
                return (
                    f"prices.models.{name}.{side}",
                    f"{value} USD per million tokens is over {MAX_PRICE}: is it a typo?",
                )
    return None


class CostOverflowError(ValueError):
    """A replayed cost beyond what ``Decimal(18, 9)`` holds."""


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """A ``jobs`` row as a replay reads it."""

    job_id: str
    attempt: int
    tenant: str
    model: str
    finished_at: dt.datetime
    prompt_tokens: int
    completion_tokens: int
    recorded_cost: Decimal


def replayed_cost(prices: Prices, job: FinishedJob) -> Decimal:
    """The job's usage under ``prices``: exactly what ``Prices.cost`` charges."""
    cost = prices.cost(job.model, job.prompt_tokens, job.completion_tokens)
    if cost > MAX_COST:
        raise CostOverflowError(
            f"job {job.job_id} ({job.model}) would cost {cost} USD, more than a cost column holds"
        )
    return cost


@dataclass
class Sums:
    """What a group of replayed jobs adds up to, dollars exact."""

    jobs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recorded: Decimal = Decimal(0)
    replayed: Decimal = Decimal(0)

    def add(self, job: FinishedJob, replayed: Decimal) -> None:
        self.jobs += 1
        self.prompt_tokens += job.prompt_tokens
        self.completion_tokens += job.completion_tokens
        self.recorded += job.recorded_cost
        self.replayed += replayed

    def as_json(self) -> dict[str, Any]:
        """Dollars as numbers, like every analytics answer (``Decimal(repr(x))`` is exact)."""
        return {
            "jobs": self.jobs,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "recorded_usd": float(self.recorded),
            "replayed_usd": float(self.replayed),
            "difference_usd": float(self.replayed - self.recorded),
        }


@dataclass
class Summary:
    """A replay's totals, by model and by tenant, and the models the table does not price."""

    total: Sums = field(default_factory=Sums)
    by_model: dict[str, Sums] = field(default_factory=dict)
    by_tenant: dict[str, Sums] = field(default_factory=dict)
    unpriced: set[str] = field(default_factory=set)

    def add(self, prices: Prices, job: FinishedJob, replayed: Decimal) -> None:
        self.total.add(job, replayed)
        self.by_model.setdefault(job.model, Sums()).add(job, replayed)
        self.by_tenant.setdefault(job.tenant, Sums()).add(job, replayed)
        if prices.price(job.model) is None:
            self.unpriced.add(job.model)

    def groups(self, key: str) -> list[dict[str, Any]]:
        """One row per group, the dearest under the new prices first."""
        by = self.by_model if key == "model" else self.by_tenant
        ordered = sorted(by.items(), key=lambda kv: (-kv[1].replayed, kv[0]))
        return [{key: name, **sums.as_json()} for name, sums in ordered]


def replay(prices: Prices, jobs: Iterable[FinishedJob], summary: Summary) -> list[Decimal]:
    """Price ``jobs`` under ``prices``, adding each to ``summary``; their replayed costs."""
    out = []
    for job in jobs:
        cost = replayed_cost(prices, job)
        summary.add(prices, job, cost)
        out.append(cost)
    return out


def answer(
    summary: Summary,
    replay_id: str,
    replayed_at: dt.datetime,
    since: dt.datetime | None,
    until: dt.datetime,
) -> dict[str, Any]:
    """The JSON answer of a replay (``schemas.api.CostReplay``)."""
    return {
        "replay_id": replay_id,
        "replayed_at": replayed_at.isoformat(),
        "since": since.isoformat() if since is not None else None,
        "until": until.isoformat(),
        **summary.total.as_json(),
        "unpriced_models": sorted(summary.unpriced),
        "by_model": summary.groups("model"),
        "by_tenant": summary.groups("tenant"),
    }


_SELECT = (
    "SELECT job_id, attempt, tenant, model, finished_at, "
    "toUnixTimestamp64Micro(finished_at) AS finished_us, prompt_tokens, completion_tokens, "
    "cost_usd FROM jobs WHERE {where} ORDER BY tenant, finished_at, job_id, attempt "
    "LIMIT {limit}"
)
_AFTER = (
    "(tenant, finished_at, job_id, attempt) > ({tenant:String}, "
    "fromUnixTimestamp64Micro({finished_us:Int64}, 'UTC'), {job_id:String}, {attempt:UInt16})"
)


def page_query(
    since: dt.datetime | None, until: dt.datetime, after: dict[str, Any] | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """The next page of ``jobs`` rows in the window, after the last row read (in the table's
    own order, so each page is a read in order, not a sort of the window)."""
    parts = ["finished_at < {until:DateTime64(6, 'UTC')}"]
    params: dict[str, Any] = {"until": utc(until)}
    if since is not None:
        parts.append("finished_at >= {since:DateTime64(6, 'UTC')}")
        params["since"] = utc(since)
    if after is not None:
        parts.append(_AFTER)
        params |= after
    return _SELECT.replace("{where}", " AND ".join(parts)).replace("{limit}", str(limit)), params


async def run(
    reader: ClickHouse,
    prices: Prices,
    since: dt.datetime | None,
    until: dt.datetime | None,
    page_rows: int = PAGE_ROWS,
) -> dict[str, Any]:
    """Replay the window's jobs under ``prices`` into ``cost_replays``; the answer.

    Pages are read on ``reader`` (the API's session, with its budgets) and
    written on a session of the replay's own: ClickHouse counts an insert's rows
    against a session's result budget, and the sink's session is the sink's.
    """
    writer = await ClickHouse.open(reader.url, reader.database, role="cost-replay")
    try:
        return await _replay_pages(reader, writer, prices, since, until, page_rows)
    finally:
        await writer.close()


async def _replay_pages(
    reader: ClickHouse,
    writer: ClickHouse,
    prices: Prices,
    since: dt.datetime | None,
    until: dt.datetime | None,
    page_rows: int,
) -> dict[str, Any]:
    replay_id = uuid.uuid4().hex
    replayed_at = dt.datetime.now(dt.UTC)
    end = until if until is not None else replayed_at
    summary = Summary()
    after: dict[str, Any] | None = None
    while True:
        rows = (await reader.query(*page_query(since, end, after, page_rows))).dicts()
        if not rows:
            break
        jobs = [_job(r) for r in rows]
        costs = replay(prices, jobs, summary)
        await writer.insert(TABLE, COLUMNS, _columns(replay_id, replayed_at, jobs, costs))
        last = rows[-1]
        after = {k: last[k] for k in ("tenant", "finished_us", "job_id", "attempt")}
        if len(rows) < page_rows:
            break
    log.info(
        "cost replay %s: %d jobs, recorded %s USD, replayed %s USD",
        replay_id,
        summary.total.jobs,
        summary.total.recorded,
        summary.total.replayed,
    )
    return answer(summary, replay_id, replayed_at, since, end)


def _job(row: dict[str, Any]) -> FinishedJob:
    return FinishedJob(
        job_id=row["job_id"],
        attempt=row["attempt"],
        tenant=row["tenant"],
        model=row["model"],
        finished_at=utc(row["finished_at"]),  # read back naive, in UTC
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        recorded_cost=Decimal(row["cost_usd"]),
    )


def _columns(
    replay_id: str, replayed_at: dt.datetime, jobs: list[FinishedJob], costs: list[Decimal]
) -> list[list[Any]]:
    return [
        [replay_id] * len(jobs),
        [replayed_at] * len(jobs),
        [j.job_id for j in jobs],
        [j.attempt for j in jobs],
        [j.tenant for j in jobs],
        [j.model for j in jobs],
        [j.finished_at for j in jobs],
        [j.prompt_tokens for j in jobs],
        [j.completion_tokens for j in jobs],
        [j.recorded_cost for j in jobs],
        costs,
    ]
