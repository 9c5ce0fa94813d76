"""The lean routes answer every refusal exactly as the documented FastAPI routes they
stand in front of: ``POST /v1/jobs`` (``services.ingest.lean_submit``) and
``GET /v1/jobs/{id}/events`` (``services.gateway.lean_events``).

Both apps are built from the same settings; one has the lean routes taken out, so
FastAPI's routes serve them. Refusals never reach Kafka, so the apps run without
their lifespan (no producer or fan-out is started).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.core.settings import Settings
from services.serve import build_app
from tests.conftest import ALICE, API_KEYS

pytestmark = pytest.mark.kafka

JSON = {"content-type": "application/json"}

CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("no key", JSON, b'{"prompt": "hi"}'),
    ("unknown key", {**JSON, "Authorization": "Bearer nope"}, b'{"prompt": "hi"}'),
    ("basic auth", {**JSON, "Authorization": "Basic eA=="}, b'{"prompt": "hi"}'),
    ("not json", {**ALICE, "content-type": "text/plain"}, b"hi"),
    ("no content type", ALICE, b'{"prompt": "hi"}'),
    ("broken json", {**ALICE, **JSON}, b'{"prompt": "hi",'),
    ("NaN", {**ALICE, **JSON}, b'{"prompt": "hi", "temperature": NaN}'),
    ("empty body", {**ALICE, **JSON}, b""),
    ("null", {**ALICE, **JSON}, b"null"),
    ("a list", {**ALICE, **JSON}, b'["prompt"]'),
    ("empty object", {**ALICE, **JSON}, b"{}"),
    ("empty prompt", {**ALICE, **JSON}, b'{"prompt": ""}'),
    ("unknown field", {**ALICE, **JSON}, b'{"prompt": "hi", "colour": 1}'),
    ("bad priority", {**ALICE, **JSON}, b'{"prompt": "hi", "priority": "asap"}'),
    ("bad role", {**ALICE, **JSON}, b'{"messages": [{"role": "robot", "content": "x"}]}'),
    ("max_tokens", {**ALICE, **JSON}, b'{"prompt": "hi", "max_tokens": -5}'),
    (
        "long idempotency key",
        {**ALICE, **JSON, "Idempotency-Key": "k" * 201},
        b'{"prompt": "hi"}',
    ),
    (
        "long key and bad body",
        {**ALICE, **JSON, "Idempotency-Key": "k" * 201},
        b'{"prompt": ""}',
    ),
    ("no key and bad body", JSON, b"{"),
    ("over the body limit", {**ALICE, **JSON}, b'{"prompt": "' + b"x" * 70_000 + b'"}'),
]


LEAN_PATHS = {"/v1/jobs", "/v1/jobs/{job_id}/events"}


def without_lean_routes(app: FastAPI) -> FastAPI:
    """``app`` with only FastAPI's routes: the documented ones serve every path."""
    app.router.routes[:] = [
        r
        for r in app.router.routes
        if isinstance(r, APIRoute) or getattr(r, "path", None) not in LEAN_PATHS
    ]
    return app


@pytest.fixture(scope="module")
def apps(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, FastAPI]]:
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"r{run}",
        api_keys=API_KEYS,
        max_body_bytes=65_536,
        data_dir=tmp_path_factory.mktemp("data"),  # type: ignore[arg-type]
    )
    lean = build_app(settings, ["ingest", "gateway"])
    plain = without_lean_routes(build_app(settings, ["ingest", "gateway"]))
    yield lean, plain


async def answer(app: FastAPI, headers: dict[str, str], body: bytes) -> tuple[int, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post("/v1/jobs", content=body, headers=headers)
    return r.status_code, r.json()


@pytest.mark.parametrize("path", sorted(LEAN_PATHS))
def test_the_lean_route_is_the_one_serving(apps: tuple[FastAPI, FastAPI], path: str) -> None:
    lean, plain = apps
    served = [r for r in lean.router.routes if getattr(r, "path", None) == path]
    assert not isinstance(served[0], APIRoute), "the lean route must come first"
    assert not any(
        getattr(r, "path", None) == path and not isinstance(r, APIRoute)
        for r in plain.router.routes
    )


@pytest.mark.parametrize(("case", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_every_refusal_is_the_same_from_both_routes(
    apps: tuple[FastAPI, FastAPI], case: str, headers: dict[str, str], body: bytes
) -> None:
    lean, plain = apps
    got = asyncio.run(answer(lean, headers, body))
    want = asyncio.run(answer(plain, headers, body))
    assert 400 <= want[0] < 500, (case, want)
    assert got == want, case


def test_a_valid_job_gets_the_same_answer_from_both_routes(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    body = b'{"prompt": "hi", "max_tokens": 1, "priority": "high"}'
    got = asyncio.run(answer(apps[0], {**ALICE, **JSON}, body))
    want = asyncio.run(answer(apps[1], {**ALICE, **JSON}, body))
    assert got[0] == want[0] == 202
    assert isinstance(got[1], dict) and isinstance(want[1], dict)
    assert got[1]["job_id"] != want[1]["job_id"]
    assert set(got[1]) == set(want[1])

    def without_ids(answer: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in answer.items() if str(answer["job_id"]) not in str(v)}

    assert without_ids(got[1]) == without_ids(want[1])


JOB = "0199a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
"""Well formed, issued to nobody."""
EVENTS = f"/v1/jobs/{JOB}/events"

EVENT_CASES: list[tuple[str, str, str, dict[str, str]]] = [
    ("not an id", "GET", "/v1/jobs/nope/events", ALICE),
    ("uppercase id", "GET", f"/v1/jobs/{JOB.upper()}/events", ALICE),
    ("not an id, no key", "GET", "/v1/jobs/nope/events", {}),
    ("no key", "GET", EVENTS, {}),
    ("unknown key", "GET", EVENTS, {"Authorization": "Bearer nope"}),
    ("unknown x-api-key", "GET", EVENTS, {"X-API-Key": "nope"}),
    ("forged token", "GET", EVENTS + "?token=abc", {}),
    ("forged token beside a key", "GET", EVENTS + "?token=abc", ALICE),
    ("cursor not a number", "GET", EVENTS + "?last_event_id=x", ALICE),
    ("header cursor not a number", "GET", EVENTS, {**ALICE, "Last-Event-ID": "-1"}),
    ("both cursors bad", "GET", EVENTS + "?last_event_id=x", {**ALICE, "Last-Event-ID": "y"}),
    ("cursor too long", "GET", EVENTS + "?last_event_id=" + "1" * 20, ALICE),
    ("cursor past any offset", "GET", EVENTS + "?last_event_id=" + "9" * 19, ALICE),
    ("bad cursor, no key", "GET", EVENTS + "?last_event_id=x", {}),
    ("HEAD", "HEAD", EVENTS, ALICE),
    ("POST", "POST", EVENTS, ALICE),
]


async def event_answer(
    app: FastAPI, method: str, url: str, headers: dict[str, str]
) -> tuple[int, object, str | None]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.request(method, url, headers=headers)
    return r.status_code, r.json() if r.content else None, r.headers.get("allow")


@pytest.mark.parametrize(
    ("case", "method", "url", "headers"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES]
)
def test_every_refused_stream_is_the_same_from_both_routes(
    apps: tuple[FastAPI, FastAPI], case: str, method: str, url: str, headers: dict[str, str]
) -> None:
    lean, plain = apps
    got = asyncio.run(event_answer(lean, method, url, headers))
    want = asyncio.run(event_answer(plain, method, url, headers))
    assert 400 <= want[0] < 500, (case, want)
    assert got == want, case
