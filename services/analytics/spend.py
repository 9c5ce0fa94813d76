"""Each tenant's spend, read from ClickHouse and published on ``tokenrelay.spend``.

About once a second the analytics part sums ``cost_hourly`` (kept by a
materialized view of ``jobs``, the finished jobs the sink inserts exactly once
from the lifecycle log) for the UTC day and month, and publishes one
``TenantSpend`` per tenant whose figures changed. Every process follows the
topic (``tenancy_follower.py``): ingest refuses what a budget forbids, the
workers stop a running job at its tenant's budget, and ``GET
/v1/tenants/{t}/usage`` shows it. Being derived from the log through the
sink's deduplicated inserts, a job is counted once however often it is
replayed or its batch re-inserted after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal

from schemas.tenants import TenantSpend
from services.analytics.clickhouse import ClickHouse
from services.core.breakdown import Breakdown
from services.core.errors import ClickHouseError, KafkaError
from services.core.ids import now_us
from services.core.kafka import Producer
from services.core.serde import encode
from services.core.tenancy import utc_day

log = logging.getLogger(__name__)

SPEND_EVERY_S = 1.0

SPEND_SQL = """
SELECT
    tenant,
    sumIf(cost_usd, hour >= {day_start:DateTime('UTC')}) AS usd_day,
    sumIf(prompt_tokens + completion_tokens, hour >= {day_start:DateTime('UTC')}) AS tokens_day,
    sumIf(jobs, hour >= {day_start:DateTime('UTC')}) AS jobs_day,
    sum(cost_usd) AS usd_month
FROM cost_hourly
WHERE hour >= {month_start:DateTime('UTC')}
GROUP BY tenant
"""


def spend_records(rows: list[tuple[object, ...]], now: int) -> list[TenantSpend]:
    """One record per tenant from ``SPEND_SQL``'s rows, read at ``now`` (µs)."""
    day, _ = utc_day(now)
    return [
        TenantSpend(
            tenant=str(tenant),
            day=day,
            usd_day=float(Decimal(str(usd_day))),
            tokens_day=int(str(tokens)),
            jobs_day=int(str(jobs)),
            usd_month=float(Decimal(str(usd_month))),
            as_of=now,
        )
        for tenant, usd_day, tokens, jobs, usd_month in rows
    ]


def figures(s: TenantSpend) -> tuple[object, ...]:
    return (s.day, s.usd_day, s.tokens_day, s.jobs_day, s.usd_month)


class SpendPublisher:
    def __init__(self, engine: ClickHouse, producer: Producer, topic: str) -> None:
        self._engine = engine
        self._producer = producer
        self._topic = topic
        self._published: dict[str, tuple[object, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self, breakdown: Breakdown) -> None:
        self._task = asyncio.create_task(self._run(), name="spend")
        breakdown.watch(self._task, "the spend publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_once()
                if self._failing:
                    log.info("tenant spend published again")
                self._failing = False
            except (ClickHouseError, KafkaError) as exc:
                if not self._failing:
                    log.warning("tenant spend not published: %s", exc)
                self._failing = True
            await asyncio.sleep(SPEND_EVERY_S)

    async def publish_once(self) -> int:
        """Read the spend and publish what changed; how many records were published."""
        now = now_us()
        when = datetime.fromtimestamp(now / 1e6, UTC)
        day_start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = await self._engine.query(
            SPEND_SQL,
            {
                "day_start": day_start.replace(tzinfo=None),
                "month_start": day_start.replace(day=1, tzinfo=None),
            },
        )
        changed = [
            s for s in spend_records(rows.rows, now) if self._published.get(s.tenant) != figures(s)
        ]
        if changed:
            await self._producer.produce_all(
                [(self._topic, s.tenant, encode(s), None) for s in changed]
            )
            for s in changed:
                self._published[s.tenant] = figures(s)
            log.debug("spend of %d tenant(s) published", len(changed))
        return len(changed)
