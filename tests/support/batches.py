"""Batches in tests: submit one over HTTP, give the workers instructions directly."""

from __future__ import annotations

import httpx

from schemas.control import Control, control_key
from services.core.kafka import Producer
from services.core.serde import encode
from services.core.settings import Settings
from tests.conftest import ALICE


async def submit_batch(
    client: httpx.AsyncClient, n: int, headers: dict[str, str] = ALICE, **job: object
) -> tuple[str, list[str]]:
    """POST /v1/batches with ``n`` jobs like ``job``; (batch_id, job_ids)."""
    jobs = [{"prompt": f"batch job {i}", **job} for i in range(n)]
    r = await client.post("/v1/batches", json={"jobs": jobs}, headers=headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert len(body["job_ids"]) == n
    return body["batch_id"], body["job_ids"]


async def send_control(settings: Settings, control: Control) -> None:
    """Publish an instruction to the control topic as the ingest would, without the API."""
    async with Producer(settings.kafka_bootstrap) as producer:
        await producer.send(settings.topics.control, control_key(control), encode(control))
