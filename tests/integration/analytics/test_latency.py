"""The latency rollup (t-digest states merged per model) agrees with exact percentiles over
``jobs``, and every ``completed`` event carries its time to first token and ordered
inter-token percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from schemas.events import Completed
from services.core.settings import Settings
from tests.conftest import ALICE
from tests.support.analytics import analytics_caught_up, completed_events, get_rows, run_sql
from tests.support.polling import until
from tests.support.stack import running
from tests.support.topic_reader import events_reader

pytestmark = pytest.mark.kafka

JOBS = 60
COLUMNS = {"ttft_ms": "ttft_ms", "itl_ms": "itl_p50_ms", "duration_ms": "duration_ms"}
"""Each latency of the rollup, and the ``jobs`` column it summarises."""
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _job(i: int) -> dict[str, object]:
    """Paced from 25 to 320 tokens/s and 20 to 40 tokens long: latencies spread over 3-40 ms
    between tokens and 0.1-1.6 s per job, not one flat value."""
    return {
        "prompt": f"latency {i}",
        "max_tokens": 20 + (i * 7) % 21,
        "provider_options": {"tokens_per_s": 25 + 5 * i},
    }


async def test_latency_rollup_agrees_with_exact_percentiles(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(worker_concurrency=JOBS, sink_flush_s=0.2)
    with running(settings, ["ingest", "worker", "analytics"]) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as c,
            events_reader(
                settings.kafka_bootstrap, settings.topics.tokens, settings.topic_partitions
            ) as log,
        ):
            jobs = {"jobs": [_job(i) for i in range(JOBS)]}
            r = await c.post("/v1/batches", json=jobs, headers=ALICE)
            assert r.status_code == 202, r.text
            events = await log.until(
                lambda ev: sum(isinstance(e, Completed) for e in ev) >= JOBS,
                what="every job completed",
            )
            await analytics_caught_up(c, JOBS)
            # Every rollup is filled by the same inserts, but read through its own query:
            # wait for this one to count every job too (a shortfall that lasts still fails).
            (rollup,) = await until(
                lambda: get_rows(c, "latency", group_by="model"),
                lambda rows: len(rows) == 1 and rows[0]["jobs"] >= JOBS,
                timeout=30,
            )
            exact = {}
            values = {}
            for name, column in COLUMNS.items():
                where = f"FROM jobs WHERE status = 'succeeded' AND {column} IS NOT NULL"
                ((qs, n),) = await run_sql(
                    c, f"SELECT quantilesExactInclusive(0.5, 0.9, 0.99)({column}), count() {where}"
                )
                ((sorted_values,),) = await run_sql(
                    c, f"SELECT arraySort(groupArray({column})) {where}"
                )
                exact[name] = dict(zip(QUANTILES, qs, strict=True))
                values[name] = sorted_values
                assert n == JOBS

    for e in completed_events(events):
        assert e.ttft_ms is not None and e.ttft_ms > 0, e.job_id
        assert e.itl_ms is not None, e.job_id
        assert 0 <= e.itl_ms.p50 <= e.itl_ms.p90 <= e.itl_ms.p99, (e.job_id, e.itl_ms)

    assert rollup["model"] == "fake-1"
    assert rollup["jobs"] == JOBS
    for name in COLUMNS:
        got = rollup[name]
        assert got["p50"] <= got["p90"] <= got["p99"], (name, got)
        for q, p in QUANTILES.items():
            low, high = _one_rank_either_side(values[name], p)
            assert low <= exact[name][q] <= high, "the window holds the exact value"
            assert low - SLACK_MS <= got[q] <= high + SLACK_MS, (
                f"{name} {q}: rollup {got[q]}, exact {exact[name][q]}, "
                f"one rank either side [{low}, {high}]"
            )


SLACK_MS = Decimal("0.001")
"""The API rounds to 3 decimals (and t-digest keeps Float32 centroids: ~1e-7 relative)."""


def _one_rank_either_side(sorted_values: list[Decimal], q: float) -> tuple[Decimal, Decimal]:
    """Where a rank-accurate sketch's ``q`` quantile must lie: between the values one rank
    below and one rank above the exact (interpolated) position ``q*(n-1)``.

    Why ranks, not a relative error: t-digest bounds the error in rank, and with 60
    values one rank is 1/59 of the distribution. Near the middle neighbouring values
    are close (~3 % apart here), but at p99 the two largest values can differ by 15 %
    or more, and a t-digest's p99 of 60 values is typically the largest one while the
    exact inclusive p99 interpolates 41 % of the way from the second largest. Measured
    on one run: rollup minus exact was -0.01 to -0.25 ms at p50/p90 of TTFT and ITL, -10 ms of
    213 ms at the duration p50, +6.4 ms of 41.7 ms at the TTFT p99 (the maximum) —
    each inside this bound.
    """
    pos = q * (len(sorted_values) - 1)
    below = max(int(pos) - 1, 0)
    above = min(math.ceil(pos) + 1, len(sorted_values) - 1)
    return sorted_values[below], sorted_values[above]
