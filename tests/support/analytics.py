"""Analytics in tests: prices, totals from the tokens topic, API answers, a sink process."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from schemas.events import Completed, JobEvent
from services.core.kafka import Committed, Consumer
from services.core.settings import Settings
from tests.conftest import ADMIN
from tests.support.polling import until
from tests.support.workers import ChildProcess, child_process, settings_env

FAKE_PRICE = {"fake-1": {"input": 1.5, "output": 6.0}}
"""USD per million tokens for the fake provider's model, so that its jobs cost something."""


def write_prices(directory: Path) -> Path:
    """A price file pricing the fake model; pass it as ``prices=`` (``TOKENRELAY_PRICES``)."""
    path = directory / "prices.json"
    path.write_text(json.dumps({"models": FAKE_PRICE}))
    return path


@dataclass(frozen=True)
class Totals:
    """What a set of finished jobs adds up to; dollars exact to the nano-dollar."""

    jobs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.jobs + other.jobs,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )


def completed_events(events: Iterable[JobEvent]) -> list[Completed]:
    """Every ``completed`` event, one per (job_id, attempt); fails on a second copy."""
    out: dict[tuple[str, int], Completed] = {}
    for e in events:
        if isinstance(e, Completed):
            assert (e.job_id, e.attempt) not in out, f"{e.job_id} completed twice"
            out[(e.job_id, e.attempt)] = e
    return list(out.values())


def totals_from_completed(events: Iterable[Completed]) -> Totals:
    """The sums over ``completed`` events, each float dollar read back as its exact decimal."""
    total = Totals()
    for e in events:
        total += Totals(
            1, e.usage.prompt_tokens, e.usage.completion_tokens, Decimal(repr(e.cost_usd))
        )
    return total


def totals_of_rows(rows: Iterable[dict[str, Any]]) -> Totals:
    """The sums over cost rows of ``/v1/analytics/cost`` (read with ``decimal_json``)."""
    total = Totals()
    for r in rows:
        total += Totals(r["jobs"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
    return total


def decimal_json(r: httpx.Response) -> Any:
    """The answer's JSON with every number that has a fraction as the Decimal of its text."""
    return json.loads(r.text, parse_float=Decimal)


async def get_rows(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] = ADMIN, **params: str
) -> list[dict[str, Any]]:
    """``GET /v1/analytics/<path>`` → its rows, numbers exact; fails unless 200."""
    r = await client.get(f"/v1/analytics/{path}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = decimal_json(r)["rows"]
    return rows


async def run_sql(client: httpx.AsyncClient, sql: str) -> list[list[Any]]:
    """``POST /v1/analytics/sql`` as the admin → its rows; fails unless 200."""
    r = await client.post("/v1/analytics/sql", json={"sql": sql}, headers=ADMIN)
    assert r.status_code == 200, f"{sql}: {r.text}"
    rows: list[list[Any]] = decimal_json(r)["rows"]
    return rows


async def analytics_caught_up(client: httpx.AsyncClient, jobs: int, timeout: float = 60.0) -> None:
    """Wait until the cost rollup counts ``jobs`` finished jobs in all; a timeout names the
    last count, and the answer or the process's readiness that kept it short."""
    seen: dict[str, Any] = {"jobs": -1}

    async def counted() -> dict[str, Any]:
        r = await client.get("/v1/analytics/cost", params={"group_by": "tenant"}, headers=ADMIN)
        if r.status_code == 200:
            seen["jobs"] = sum(row["jobs"] for row in r.json()["rows"])
            if seen["jobs"] >= jobs:
                return dict(seen)
            ready = await client.get("/readyz")  # short: say whether the sink is running
            return {**seen, "readyz": ready.text[:300]}
        if r.status_code == 429:  # the per-key analytics limit: ask again when it says
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        return {**seen, "http": r.status_code, "answer": r.text[:200]}

    await until(counted, lambda s: s["jobs"] >= jobs and len(s) == 1, timeout=timeout)


INTENT = re.compile(r"^sink/1 through=(\d+)$")
"""The note a sink commits with a batch's start offset before it inserts the batch."""


class SinkOffsets:
    """The analytics group's committed offsets and notes on the lifecycle topic, read as an
    outsider (no subscribe), so asking never disturbs the group."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.lifecycle
        self.partitions = settings.topic_partitions
        self._consumer = Consumer(settings.kafka_bootstrap, settings.analytics_group)

    async def __aenter__(self) -> SinkOffsets:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.close()

    async def read(self) -> dict[int, Committed]:
        found = await self._consumer.committed([(self.topic, p) for p in range(self.partitions)])
        return {p: found[(self.topic, p)] for p in range(self.partitions)}

    async def intents(self) -> dict[int, tuple[int, int]]:
        """Partitions whose batch is being inserted: ``{partition: (start, through)}``."""
        out = {}
        for p, c in (await self.read()).items():
            m = INTENT.match(c.metadata)
            if m is not None and c.offset is not None:
                out[p] = (c.offset, int(m.group(1)))
        return out


@contextmanager
def analytics_process(
    settings: Settings,
    log_dir: Path,
    port: int,
    chdb_dir: Path,
    name: str = "analytics",
    parts: tuple[str, ...] = ("analytics",),
) -> Iterator[ChildProcess]:
    """``tokenrelay serve analytics --port <port>`` on its own chDB directory, ready when yielded.

    chDB allows one data directory per process, so the child never shares the test
    process's; pass the same ``chdb_dir`` (and port) again to restart it on its data.
    ``parts`` serves more than analytics in that process (the public face, as ``make up``).
    """
    env = {
        **settings_env(settings),
        "TOKENRELAY_CLICKHOUSE_URL": f"chdb://{chdb_dir}",
        "TOKENRELAY_DATA_DIR": str(log_dir / name),
    }
    args = ["serve", *parts, "--port", str(port)]
    with child_process(name, args, env, log_dir, port) as child:
        yield child
