"""The analytics sink does the same work for a job of 10 tokens as for one of 5,000: it reads
``tokenrelay.lifecycle``, not every token.

The whole stack as ``make up`` runs it (aggregator and public face in processes of their
own); one job of each size runs alone, and the records the sink consumed for it are read
from its ``/metrics``. The progress tick is longer than either job, so each job has
exactly one tick (its first token) and the two counts must be equal. (The aggregator still
reads every token: see ``services/aggregator/app.py``.)
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
async def test_a_job_costs_the_analytics_sink_the_same_whatever_its_tokens(
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
            read: dict[int, float] = {}
            for tokens in (10, 5000):
                before = await counter(api, pub.url, "tokenrelay_sink_records_total")
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
                read[tokens] = await counter(api, pub.url, "tokenrelay_sink_records_total") - before
    assert read[10] == read[5000] == 4, f"sink: {read}"  # queued, started, a tick, completed
