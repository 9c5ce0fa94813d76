"""Pages of the origins in ``TOKENRELAY_CORS_ORIGINS`` may call the API and open streams;
pages of any other origin get nothing a browser would let them read.

What a browser checks: the preflight's answer for ``fetch`` with an API key, the
``Access-Control-Allow-Origin`` of every answer (an ``EventSource`` with a stream
token reads nothing without it), and whether a websocket handshake is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.core.cors import websocket_origin_allowed
from services.core.settings import Settings
from services.serve import build_app
from tests.conftest import ALICE, API_KEYS
from tests.support.sse import read_events_async
from tests.support.stack import running
from tests.support.ws import read_ws, ws_denial, ws_url

pytestmark = pytest.mark.kafka

APP = "http://app.test:5173"
OTHER = "https://evil.test"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"cors{id(tmp_path_factory)}",
        worker_group=f"cors-w{id(tmp_path_factory)}",
        api_keys=API_KEYS,
        cors_origins=f"{APP}, https://other-app.test",
        data_dir=tmp_path_factory.mktemp("data"),  # type: ignore[arg-type]
    )
    with running(settings, ["ingest", "gateway", "worker"]) as base:
        yield base


def allowed_origin(r: httpx.Response) -> str | None:
    return r.headers.get("access-control-allow-origin")


def test_a_preflight_from_an_allowed_origin_allows_the_key_and_the_body(stack: str) -> None:
    r = httpx.options(f"{stack}/v1/jobs", headers={"Origin": APP, **PREFLIGHT})
    assert r.status_code == 200
    assert allowed_origin(r) == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in r.headers


def test_a_preflight_from_another_origin_is_refused(stack: str) -> None:
    r = httpx.options(f"{stack}/v1/jobs", headers={"Origin": OTHER, **PREFLIGHT})
    assert r.status_code == 400
    assert allowed_origin(r) is None


async def test_an_allowed_page_submits_and_streams_a_job_whole_with_its_stream_token(
    stack: str,
) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        r = await client.post(
            "/v1/jobs", json={"prompt": "cors", "max_tokens": 8}, headers={**ALICE, "Origin": APP}
        )
        assert r.status_code == 202 and allowed_origin(r) == APP
        job = r.json()
        url = f"{job['stream_url']}?token={job['stream_token']}"
        async with client.stream("GET", url, headers={"Origin": APP}) as head:
            assert allowed_origin(head) == APP, "EventSource reads only with this header"
        events = await read_events_async(client, url, {"Origin": APP})
    assert events[0].event == "queued" and events[-1].event == "completed"
    assert len([e for e in events if e.event == "token"]) == 8


async def test_another_origin_gets_no_allowance_on_any_answer(stack: str) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        r = await client.post(
            "/v1/jobs", json={"prompt": "x", "max_tokens": 1}, headers={**ALICE, "Origin": OTHER}
        )
        job = r.json()
        url = f"{job['stream_url']}?token={job['stream_token']}"
        async with client.stream("GET", url, headers={"Origin": OTHER}) as stream:
            assert allowed_origin(stream) is None
    assert allowed_origin(r) is None


async def test_a_websocket_opens_from_an_allowed_origin_and_not_from_another(
    stack: str,
) -> None:
    async with httpx.AsyncClient(base_url=stack, timeout=30) as client:
        r = await client.post("/v1/jobs", json={"prompt": "ws", "max_tokens": 4}, headers=ALICE)
        job = r.json()
    url = ws_url(stack, job["job_id"], token=job["stream_token"])
    status, body = await ws_denial(url, {"Origin": OTHER})
    assert status == 403 and body["error"]["field"] == "Origin"
    ws = await read_ws(url, {"Origin": APP})
    assert ws.events[-1].event == "completed" and ws.close_code == 1000
    same = await read_ws(url, {"Origin": stack})  # the API's own pages
    assert same.events[-1].event == "completed"


@pytest.mark.parametrize(
    ("origins", "headers", "allowed"),
    [
        ([], {}, True),
        ([], {"origin": OTHER, "host": "api.test"}, False),
        ([], {"origin": "http://api.test", "host": "api.test"}, True),
        ([APP], {"origin": APP, "host": "api.test"}, True),
        (["*"], {"origin": OTHER, "host": "api.test"}, True),
    ],
)
def test_which_websocket_origins_may_go_on(
    origins: list[str], headers: dict[str, str], allowed: bool
) -> None:
    assert websocket_origin_allowed(origins, headers) is allowed


def test_without_origins_no_page_of_another_origin_is_allowed(kafka_bootstrap: str) -> None:
    app = build_app(Settings(kafka_bootstrap=kafka_bootstrap, api_keys=API_KEYS), ["ingest"])

    async def preflight() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
            return await c.options("/v1/jobs", headers={"Origin": APP, **PREFLIGHT})

    r = asyncio.run(preflight())
    assert r.status_code == 405 and allowed_origin(r) is None


@pytest.mark.parametrize("bad", ["app.test", "http://app.test/ui", "ftp://app.test"])
def test_an_origin_that_is_not_one_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origins=bad)
