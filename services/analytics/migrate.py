"""Schema migrations: numbered SQL files applied in order at start, each recorded once.

``migrations/NNNN_name.sql`` holds statements separated by ``;``. A file not
yet in ``schema_migrations`` is run and then recorded with its checksum; every
statement is ``IF NOT EXISTS``, so a start that died half way through a file
runs it again harmlessly. A recorded file whose text has changed since is an
error: a migration is never edited, a new one is added.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from services.analytics.clickhouse import ClickHouse
from services.core.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements, comments dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def shipped_migrations() -> list[Migration]:
    """Every migration file in the package, by version."""
    out = []
    for entry in resources.files("services.analytics").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migrations share a number: {versions}")
    return out


async def applied(ch: ClickHouse) -> dict[int, str]:
    """Versions recorded in the database, with the checksum each had when it ran."""
    rows = await ch.query(f"SELECT version, checksum FROM {MIGRATIONS_TABLE} FINAL")  # noqa: S608
    return {int(v): str(c) for v, c in rows.rows}


async def migrate(ch: ClickHouse, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing; the versions applied now (empty when up to date)."""
    await ch.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = await applied(ch)
    ran = []
    for m in migrations if migrations is not None else shipped_migrations():
        if m.version in done:
            if done[m.version] != m.checksum:
                raise ConfigError(
                    f"migration {m.version:04d}_{m.name} changed after it was applied to "
                    f"{ch.database}; add a new migration instead of editing one"
                )
            continue
        for statement in m.statements():
            await ch.command(statement)
        # The values come from the package's own file names and contents (checked by _NAME).
        await ch.command(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, applied_at) "  # noqa: S608
            f"VALUES ({m.version}, '{m.name}', '{m.checksum}', now64(3))"
        )
        log.info("migration %04d_%s applied to %s", m.version, m.name, ch.database)
        ran.append(m.version)
    return ran
