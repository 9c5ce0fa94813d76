"""Analytics as a service part: migrations at start, the sink, and the analytics API.

It opens three sessions on one ClickHouse (with chDB, one engine in this
process): the sink's writer, the API's reader, and a read-only one for
``POST /v1/analytics/sql``. Readiness: the schema is migrated and the sink is
consuming. A fourth session reads each tenant's spend for ``tokenrelay.spend``
(``spend.py``). The API's sessions carry budgets that ClickHouse itself enforces
(rows answered, seconds run), so no question can hold the process for long.
"""

from __future__ import annotations

import logging

from services.analytics.clickhouse import ClickHouse
from services.analytics.migrate import migrate
from services.analytics.router import Engines, make_router
from services.analytics.sink import Sink
from services.analytics.spend import SpendPublisher
from services.core.runtime import Runtime, ServicePart

log = logging.getLogger(__name__)


def budget(max_rows: int, timeout_s: float) -> dict[str, object]:
    """What ClickHouse enforces on every query of a session: rows answered, seconds run."""
    return {
        "max_result_rows": max_rows,
        "result_overflow_mode": "throw",
        "max_execution_time": timeout_s,
    }


def read_only_settings(max_rows: int, timeout_s: float) -> dict[str, object]:
    """What ClickHouse enforces on the SQL endpoint's session; ``readonly`` is applied last."""
    return budget(max_rows, timeout_s) | {"readonly": 1}


def create(rt: Runtime) -> ServicePart:
    settings = rt.settings
    engines = Engines()
    opened: list[ClickHouse] = []
    sink: list[Sink] = []
    spend: list[SpendPublisher] = []

    async def start() -> None:
        url, db = settings.clickhouse_dsn, settings.clickhouse_database
        writer = await ClickHouse.open(url, db, role="sink")
        opened.append(writer)
        applied = await migrate(writer)
        log.info("analytics schema up to date (applied now: %s)", applied or "none")
        engines.reader = await ClickHouse.open(
            url, db, budget(settings.analytics_max_rows, settings.analytics_timeout_s), "api"
        )
        opened.append(engines.reader)
        engines.read_only = await ClickHouse.open(
            url, db, read_only_settings(settings.sql_max_rows, settings.sql_timeout_s), "read-only"
        )
        opened.append(engines.read_only)
        sink.append(Sink(settings, rt.producer, writer))
        await sink[0].start()
        spend_engine = await ClickHouse.open(url, db, budget(100_000, 10.0), "spend")
        opened.append(spend_engine)
        spend.append(SpendPublisher(spend_engine, rt.producer, settings.topics.spend))
        spend[0].start(rt.breakdown)

    async def stop() -> None:
        if spend:
            await spend[0].stop()
        if sink:
            await sink[0].stop()
        for ch in reversed(opened):
            await ch.close()

    async def ready() -> str | None:
        if not sink:
            return "analytics is starting"
        return sink[0].ready_reason()

    return ServicePart(
        name="analytics",
        router=make_router(rt, engines),
        start=start,
        stop=stop,
        checks=[ready],
    )
