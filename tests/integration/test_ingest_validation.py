"""Bad input to POST /v1/jobs gets a 4xx naming what to fix; none gets a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from services.core.settings import Settings
from tests.conftest import ALICE, API_KEYS
from tests.support.stack import running

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def client(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"v{run}",
        worker_group=f"w{run}",
        api_keys=API_KEYS,
        data_dir=tmp_path_factory.mktemp("data"),  # type: ignore[arg-type]
    )
    with (
        running(settings, ["ingest", "gateway", "worker"]) as base,
        httpx.Client(base_url=base, timeout=30) as c,
    ):
        yield c


def error_of(r: httpx.Response) -> dict[str, str]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"model": "x"}, None),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "hi", "priority": "asap"}, "priority"),
        ({"prompt": "hi", "max_tokens": -5}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "hi", "temperature": 9}, "temperature"),
        ({"prompt": "hi", "timeout_s": 0}, "timeout_s"),
        ({"prompt": "hi", "response_format": "xml"}, "response_format"),
        ({"prompt": "hi", "provider": "anthropic"}, "provider"),
        ({"prompt": "hi", "unknown_field": 1}, "unknown_field"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, None),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"prompt": "hi", "provider": "openai"}, "provider"),
        ({"prompt": "hi", "provider_options": {"fail_with": "meteor"}}, "provider_options"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: httpx.Client, body: dict[str, object], field: str | None
) -> None:
    err = error_of(client.post("/v1/jobs", json=body, headers=ALICE))
    assert err["code"] == "invalid_request"
    assert err["message"]
    if field is not None:
        assert err["field"] == field


def test_huge_prompt_is_refused_without_reading_it_all(client: httpx.Client) -> None:
    r = client.post("/v1/jobs", json={"prompt": "x" * 10_000_000}, headers=ALICE)
    assert r.status_code == 413
    assert error_of(r) == {
        "code": "payload_too_large",
        "message": error_of(r)["message"],
        "field": "body",
    }


def test_prompt_over_the_character_limit_is_422(client: httpx.Client) -> None:
    r = client.post("/v1/jobs", json={"prompt": "x" * 1_000_001}, headers=ALICE)
    assert r.status_code == 422
    assert error_of(r)["field"] == "prompt"


def test_wrong_json_is_400(client: httpx.Client) -> None:
    r = client.post(
        "/v1/jobs",
        content=b'{"prompt": "hi",',
        headers={**ALICE, "content-type": "application/json"},
    )
    assert r.status_code == 400
    err = error_of(r)
    assert (err["code"], err["field"]) == ("invalid_json", "body")
    assert err["message"].startswith("not valid JSON"), err


def test_not_an_object_is_422(client: httpx.Client) -> None:
    r = client.post("/v1/jobs", json=["prompt"], headers=ALICE)
    assert r.status_code == 422
    error_of(r)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": "Basic eA=="}],
)
def test_wrong_or_missing_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    r = client.post("/v1/jobs", json={"prompt": "hi"}, headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"


def test_x_api_key_header_works(client: httpx.Client) -> None:
    r = client.post(
        "/v1/jobs", json={"prompt": "hi", "max_tokens": 1}, headers={"X-API-Key": "key-alice"}
    )
    assert r.status_code == 202


def test_bad_last_event_id_is_422(client: httpx.Client) -> None:
    job = client.post("/v1/jobs", json={"prompt": "hi", "max_tokens": 1}, headers=ALICE).json()
    r = client.get(job["stream_url"], headers={**ALICE, "Last-Event-ID": "abc"})
    assert r.status_code == 422
    assert error_of(r)["field"] == "Last-Event-ID"


def test_idempotency_key_returns_the_first_job(client: httpx.Client) -> None:
    headers = {**ALICE, "Idempotency-Key": "order-42"}
    a = client.post("/v1/jobs", json={"prompt": "once", "max_tokens": 1}, headers=headers)
    b = client.post("/v1/jobs", json={"prompt": "once", "max_tokens": 1}, headers=headers)
    assert a.status_code == b.status_code == 202
    assert a.json()["job_id"] == b.json()["job_id"]
    other = client.post("/v1/jobs", json={"prompt": "twice", "max_tokens": 1}, headers=headers)
    assert other.status_code == 409
    assert error_of(other)["field"] == "Idempotency-Key"
    invalid = client.post(
        "/v1/jobs",
        json={"prompt": "once", "max_tokens": 1, "provider_options": {"fail_after": False}},
        headers=headers,
    )
    assert invalid.status_code == 422, "a key never answers for a request it would refuse"
    assert error_of(invalid)["field"] == "provider_options"


def test_unknown_path_and_method_are_json_4xx(client: httpx.Client) -> None:
    assert error_of(client.get("/v1/nothing", headers=ALICE))["code"] == "not_found"
    r = client.delete("/v1/jobs", headers=ALICE)
    assert error_of(r)["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "GET, POST", "every method of /v1/jobs, from both routers"
