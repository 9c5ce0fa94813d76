"""Migrations on a fresh database: applied once, a second run changes nothing, edits refused.

Needs no broker: chDB runs in this process (the session's one data directory,
a database of this test's own).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from services.analytics.clickhouse import ClickHouse
from services.analytics.migrate import Migration, migrate, shipped_migrations
from services.core.errors import ConfigError

TABLES = {
    "schema_migrations",
    "job_events",
    "jobs",
    "cost_hourly",
    "cost_hourly_mv",
    "latency_hourly",
    "latency_hourly_mv",
    "throughput_minutely",
    "throughput_minutely_mv",
    "cost_replays",
}


@pytest.fixture
async def fresh(chdb_url: str) -> AsyncIterator[ClickHouse]:
    """A client on a database that does not exist yet (``open`` creates it)."""
    ch = await ClickHouse.open(chdb_url, f"m{uuid.uuid4().hex[:12]}")
    try:
        yield ch
    finally:
        await ch.command(f"DROP DATABASE IF EXISTS `{ch.database}`")
        await ch.close()


async def schema(ch: ClickHouse) -> dict[str, str]:
    """``SHOW CREATE`` of every table and view of the database, by name."""
    names = await ch.query(
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": ch.database},
    )
    out = {}
    for (name,) in names.rows:
        (create,) = (await ch.query(f"SHOW CREATE TABLE `{ch.database}`.`{name}`")).rows
        out[name] = create[0]
    return out


async def recorded(ch: ClickHouse) -> list[tuple[object, ...]]:
    """Every row of ``schema_migrations`` as stored (no FINAL: a second copy would show)."""
    rows = await ch.query(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    )
    return rows.rows


async def test_second_run_applies_nothing_and_changes_nothing(fresh: ClickHouse) -> None:
    shipped = shipped_migrations()
    assert [m.version for m in shipped] == sorted({m.version for m in shipped})

    assert await migrate(fresh) == [m.version for m in shipped]
    first_schema, first_rows = await schema(fresh), await recorded(fresh)
    assert set(first_schema) == TABLES
    assert [(v, n, c) for v, n, c, _ in first_rows] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]

    assert await migrate(fresh) == []
    assert await schema(fresh) == first_schema
    assert await recorded(fresh) == first_rows


async def test_an_edited_migration_is_refused(fresh: ClickHouse) -> None:
    shipped = shipped_migrations()
    await migrate(fresh)
    before = await schema(fresh), await recorded(fresh)

    last = shipped[-1]
    edited = [*shipped[:-1], replace(last, sql=last.sql + "\n-- a harmless-looking edit\n")]
    with pytest.raises(ConfigError, match=f"{last.version:04d}_{last.name} changed"):
        await migrate(fresh, edited)
    assert (await schema(fresh), await recorded(fresh)) == before, "nothing ran"


async def test_a_new_migration_runs_once_after_the_recorded_ones(fresh: ClickHouse) -> None:
    first = Migration(1, "one", "CREATE TABLE IF NOT EXISTS one (a UInt8) ENGINE = Memory")
    second = Migration(
        2,
        "two",
        "-- a comment line is dropped\n"
        "CREATE TABLE IF NOT EXISTS two (a UInt8) ENGINE = Memory;\n"
        "CREATE TABLE IF NOT EXISTS three (a UInt8) ENGINE = Memory;\n",
    )
    assert await migrate(fresh, [first]) == [1]
    assert await migrate(fresh, [first, second]) == [2]
    assert await migrate(fresh, [first, second]) == []
    assert set(await schema(fresh)) == {"schema_migrations", "one", "two", "three"}

    changed = Migration(1, "one", "CREATE TABLE IF NOT EXISTS one (a UInt16) ENGINE = Memory")
    with pytest.raises(ConfigError, match="0001_one changed after it was applied"):
        await migrate(fresh, [changed, second])


async def test_a_file_half_applied_by_a_dead_start_is_completed(
    fresh: ClickHouse, chdb_url: str
) -> None:
    """A start that died between two statements of a file left part of it and no record."""
    shipped = shipped_migrations()
    first_statement = shipped[-1].statements()[0]
    await migrate(fresh, shipped[:-1])
    await fresh.command(first_statement)

    assert await migrate(fresh) == [shipped[-1].version]
    reference = await ClickHouse.open(chdb_url, f"m{uuid.uuid4().hex[:12]}")
    try:
        await migrate(reference)
        expected = {
            name: create.replace(f"{reference.database}.", f"{fresh.database}.")
            for name, create in (await schema(reference)).items()
        }
    finally:
        await reference.command(f"DROP DATABASE `{reference.database}`")
        await reference.close()
    assert await schema(fresh) == expected
