"""The one door to ClickHouse: a server over HTTP or the embedded chDB, through clickhouse-connect.

``TOKENRELAY_CLICKHOUSE_URL`` picks the engine: ``chdb://<dir>`` runs ClickHouse
inside this process on that directory (one directory per process: chDB allows
no second engine), ``http(s)://user:pass@host:8123`` talks to a server. The
same SQL runs on both. Every call runs on this client's own thread, since
clickhouse-connect clients are blocking and one handle serves one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from services.core.errors import ClickHouseError, ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rows:
    """A query's answer: column names and rows of Python values."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def _client(url: str, database: str | None, settings: Mapping[str, Any]) -> Client:
    scheme = urlsplit(url).scheme
    if scheme not in {"chdb", "http", "https"}:
        raise ConfigError(f"TOKENRELAY_CLICKHOUSE_URL must be chdb://, http:// or https://: {url}")
    try:
        return clickhouse_connect.get_client(dsn=url, database=database, settings=dict(settings))
    except DriverError as exc:
        raise ClickHouseError(f"cannot connect to ClickHouse at {_safe(url)}: {exc}") from exc


def _session(url: str, database: str, settings: Mapping[str, Any]) -> Client:
    # readonly must come last: once it is set, the session refuses any other SET.
    ordered = dict(sorted(settings.items(), key=lambda kv: kv[0] == "readonly"))
    return _client(url, database, ordered)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


class ClickHouse:
    """An async client on one database. ``settings`` ride on every statement of its session.

    Create with ``open`` (which also creates the database); close when done.
    """

    def __init__(
        self, client: Client, url: str, database: str, settings: Mapping[str, Any]
    ) -> None:
        self._client = client
        self.url = url
        self.database = database
        self._settings = dict(settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    @classmethod
    async def open(
        cls, url: str, database: str, settings: Mapping[str, Any] | None = None, role: str = ""
    ) -> ClickHouse:
        """Connect to ``database`` at ``url``, creating the database first if it is missing."""

        def connect() -> Client:
            admin = _client(url, None, {})
            try:
                admin.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            except DriverError as exc:
                raise ClickHouseError(f"cannot create database {database}: {exc}") from exc
            finally:
                admin.close()
            return _session(url, database, settings or {})

        client = await asyncio.to_thread(connect)
        log.info("clickhouse %s session on %s, database %s", role, _safe(url), database)
        return cls(client, url, database, settings or {})

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))
        except DriverError as exc:
            raise ClickHouseError(f"{what}: {exc}", code=error_code(exc)) from exc

    async def command(self, sql: str) -> None:
        await self._call("statement failed", self._client.command, sql)

    async def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Rows:
        """Run a query and read its whole answer; after a failure the session starts afresh.

        A failed query can leave state on its session (with chDB, the rows of a
        multi-statement query's first statement, which the next query would
        return), so the session is replaced before the error is raised.
        """

        def run() -> Rows:
            res = self._client.query(
                sql,
                parameters=dict(parameters) if parameters else None,
                settings=dict(settings) if settings else None,
            )
            return Rows(list(res.column_names), [tuple(r) for r in res.result_rows])

        try:
            return await self._call("query failed", run)
        except ClickHouseError:
            await self._call("reconnect failed", self._reconnect)
            raise

    def _reconnect(self) -> None:
        old, self._client = self._client, _session(self.url, self.database, self._settings)
        old.close()

    async def insert(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        dedup_token: str | None = None,
    ) -> None:
        """Insert column-oriented data; a repeated ``dedup_token`` makes the insert a no-op.

        With the token, ClickHouse skips a block it has seen (tables keep a
        deduplication window) and re-runs only the materialized views that
        missed it, so an insert retried after a crash never counts twice.
        """
        settings: dict[str, Any] = {}
        if dedup_token is not None:
            settings = {
                "insert_deduplication_token": dedup_token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
            }
        await self._call(
            f"insert into {table} failed",
            self._client.insert,
            table,
            list(columns),
            column_names=list(column_names),
            column_oriented=True,
            settings=settings,
        )

    async def close(self) -> None:
        await self._call("close failed", self._client.close)
        # Its last call has returned: joining the thread is immediate, and none outlives close.
        await asyncio.to_thread(self._executor.shutdown, True)
