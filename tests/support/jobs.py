"""Submitting jobs over HTTP in tests."""

from __future__ import annotations

import httpx

from tests.conftest import ALICE


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str] = ALICE, url: str = "", **body: object
) -> str:
    """POST /v1/jobs (to ``url`` if given, else the client's base URL); the new job's id."""
    r = await client.post(f"{url}/v1/jobs", json={"prompt": "p", **body}, headers=headers)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id
