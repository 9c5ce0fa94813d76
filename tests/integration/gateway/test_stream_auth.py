"""Who may read a job's SSE stream: an API key of its tenant (or an admin), or its stream token."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.polling import until
from tests.support.sse import read_events_async
from tests.support.stack import running

pytestmark = pytest.mark.kafka


async def submit_job(client: httpx.AsyncClient, prompt: str) -> dict[str, Any]:
    """POST /v1/jobs as alice; the 202 body (job_id, stream_url, stream_token…)."""
    r = await client.post("/v1/jobs", json={"prompt": prompt, "max_tokens": 5}, headers=ALICE)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


def token_expiry(token: str) -> int:
    """The unix second after which a ``<job_id>.<tenant>.<expiry>.<mac>`` token is refused."""
    _job_id, _tenant, expiry, _mac = token.rsplit(".", 3)
    return int(expiry)


async def _now() -> float:
    return time.time()


def assert_error(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field


async def test_stream_token_alone_reads_the_stream(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job = await submit_job(client, "token only")
        by_key = await read_events_async(client, job["stream_url"], ALICE)
        by_token = await read_events_async(
            client, f"{job['stream_url']}?token={job['stream_token']}"
        )
    assert by_token[-1].event == "completed"
    assert [(e.id, e.data) for e in by_token] == [(e.id, e.data) for e in by_key]


async def test_stream_token_of_another_job_is_refused(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job = await submit_job(client, "mine")
        other = await submit_job(client, "other")
        r = await client.get(f"{other['stream_url']}?token={job['stream_token']}")
    assert_error(r, 401, "unauthenticated", "token")


async def test_expired_stream_token_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    with running(make_settings(stream_token_ttl_s=1), ["ingest", "gateway", "worker"]) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            job = await submit_job(client, "short-lived")
            token = job["stream_token"]
            expiry = token_expiry(token)
            assert expiry <= time.time() + 1, "the token lives for the configured second"
            await until(_now, lambda now: now > expiry, timeout=5)
            r = await client.get(f"{job['stream_url']}?token={token}")
            assert_error(r, 401, "unauthenticated", "token")
            by_key = await read_events_async(client, job["stream_url"], ALICE)
    assert by_key[-1].event == "completed", "the job itself is still readable with a key"


async def test_no_credentials_is_401_and_another_tenant_is_404(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job = await submit_job(client, "private")
        anonymous = await client.get(job["stream_url"])
        bob = await client.get(job["stream_url"], headers=BOB)
    assert_error(anonymous, 401, "unauthenticated")
    assert_error(bob, 404, "not_found")


async def test_every_credential_sent_must_be_valid_and_the_key_decides(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        job = await submit_job(client, "key first")
        path = job["stream_url"]
        with_bad_token = await client.get(f"{path}?token=not-a-token", headers=ALICE)
        bob_with_alices_token = await client.get(f"{path}?token={job['stream_token']}", headers=BOB)
        alice_with_her_token = await read_events_async(
            client, f"{path}?token={job['stream_token']}", ALICE
        )
    assert_error(with_bad_token, 401, "unauthenticated")
    assert with_bad_token.json()["error"]["field"] == "token"
    assert_error(bob_with_alices_token, 404, "not_found")
    assert alice_with_her_token[-1].event == "completed"
