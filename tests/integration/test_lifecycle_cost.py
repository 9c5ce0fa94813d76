"""The job-state and analytics readers do the same work for a job of 10 tokens as for one
of 5,000: they read ``tokenrelay.lifecycle``, not every token.

The whole stack as ``make up`` runs it (aggregator and public face in processes of their
own); one job of each size runs alone, and the records each reader consumed for it are
read from its ``/metrics``. The progress tick is longer than either job, so each job has
exactly one tick (its first token) and the two counts must be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ADMIN, ALICE
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.analytics import analytics_process, run_sql
from tests.support.metrics import metric_total
from tests.support.polling import until
from tests.support.stack import running

pytestmark = pytest.mark.kafka


async def counter(client: httpx.AsyncClient, url: str, name: str) -> float:
    """The sum of ``name``'s samples (every label) on the ``/metrics`` at ``url``."""
    return metric_total((await client.get(f"{url}/metrics", headers=ADMIN)).text, name)


@pytest.mark.timeout(300)
async def test_a_job_costs_the_state_and_analytics_readers_the_same_whatever_its_tokens(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings(progress_tick_s=600.0))
    face = ("ingest", "gateway", "analytics")
    with (
        aggregator_process(settings, tmp_path),
        running(settings, ["worker"]),
        analytics_process(
            settings, tmp_path, free_port(), tmp_path / "chdb", "public", face
        ) as pub,
    ):
        async with httpx.AsyncClient(base_url=pub.url, timeout=30) as api:
            aggregator = settings.aggregator_url
            read: dict[int, tuple[float, float]] = {}
            for tokens in (10, 5000):
                before = (
                    await counter(api, aggregator, "tokenrelay_aggregator_events_total"),
                    await counter(api, pub.url, "tokenrelay_sink_records_total"),
                )
                body = {
                    "prompt": "p",
                    "max_tokens": tokens,
                    "provider_options": {"tokens_per_s": 0},
                }
                r = await api.post("/v1/jobs", json=body, headers=ALICE)
                assert r.status_code == 202, r.text
                job = r.json()["job_id"]

                async def state(job: str = job) -> dict[str, object]:
                    return dict((await api.get(f"/v1/jobs/{job}", headers=ALICE)).json())

                done = await until(state, lambda s: s.get("status") == "succeeded", timeout=90)
                assert done["token_count"] == tokens
                sql = f"SELECT count() FROM jobs WHERE job_id = '{job}'"
                await until(lambda sql=sql: run_sql(api, sql), lambda rows: rows == [[1]])
                read[tokens] = (
                    await counter(api, aggregator, "tokenrelay_aggregator_events_total")
                    - before[0],
                    await counter(api, pub.url, "tokenrelay_sink_records_total") - before[1],
                )
    assert read[10][0] == read[5000][0] == 4, f"aggregator: {read}"  # queued started tick end
    assert read[10][1] == read[5000][1] == 4, f"sink: {read}"
