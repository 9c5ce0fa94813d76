"""Input no one here wrote: every refusal is a 4xx naming the field, and a refused job leaves
nothing behind — no ``queued`` event, no command, nothing in ``/v1/queues``.

Each case is one that an outside client found: values the JSON can hold but the
topics cannot (integers beyond 64 bits, NaN, lone surrogates, nesting 200 deep),
ids pasted into an internal URL, the wrong media type, a chunked body too large,
a 405 that did not say what is allowed, and a JSON-format job whose output is
not JSON, retried three times for nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from schemas.events import JobEvent
from services.core.settings import Settings
from tests.conftest import ALICE, API_KEYS
from tests.support.stack import running
from tests.support.topic_reader import by_job, events_reader, of_type

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Api:
    client: httpx.AsyncClient
    settings: Settings


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"h{run}",
        worker_group=f"w{run}",
        api_keys=API_KEYS,
        data_dir=tmp_path_factory.mktemp("data"),  # type: ignore[arg-type]
        fake_tokens_per_s=1000.0,
        max_body_bytes=1024 * 1024,
    )
    with running(settings, ["ingest", "gateway", "worker"]) as base:
        yield base, settings


@pytest.fixture
async def api(stack: tuple[str, Settings]) -> AsyncIterator[Api]:
    base, settings = stack
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, settings)


def refusal(r: httpx.Response, status: int, field: str | None = None) -> dict[str, str]:
    assert r.status_code == status, (r.status_code, r.text)
    err: dict[str, str] = r.json()["error"]
    assert err["code"] and err["message"], err
    if field is not None:
        assert err.get("field") == field, err
    return err


def raw(body: str) -> dict[str, object]:
    """A JSON body as text, so that what Python's encoder would refuse can be sent."""
    return {"content": body.encode(), "headers": {**ALICE, "content-type": "application/json"}}


NESTED = '{"prompt": "hi", "metadata": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}"

REFUSED = [
    pytest.param(
        f'{{"prompt": "hi", "metadata": {{"n": {2**70}}}}}', "metadata.n", id="int-beyond-64-bits"
    ),
    pytest.param(
        f'{{"prompt": "hi", "metadata": {{"n": [1, -{2**64}]}}}}',
        "metadata.n[1]",
        id="negative-int",
    ),
    pytest.param(
        '{"prompt": "hi", "metadata": {"v": "\\ud800"}}', "metadata.v", id="lone-surrogate-value"
    ),
    pytest.param(
        '{"prompt": "hi", "metadata": {"\\udc00": 1}}', "metadata.\\udc00", id="lone-surrogate-key"
    ),
    pytest.param('{"prompt": "hi", "metadata": {"x": NaN}}', "metadata.x", id="nan"),
    pytest.param('{"prompt": "hi", "metadata": {"x": -Infinity}}', "metadata.x", id="infinity"),
    pytest.param(
        '{"prompt": "hi", "metadata": {"x": 1e999}}', "metadata.x", id="overflowing-float"
    ),
    pytest.param(NESTED, "metadata" + ".a" * 31, id="nested-200-deep"),
    pytest.param('{"prompt": "hi", "temperature": true}', "temperature", id="bool-for-a-number"),
    pytest.param('{"prompt": "hi", "max_tokens": "5"}', "max_tokens", id="string-for-an-int"),
    pytest.param(
        '{"prompt": "hi", "provider_options": {"tokens_per_s": "9"}}',
        "provider_options",
        id="fake-option-as-string",
    ),
]


async def no_orphans(settings: Settings) -> None:
    """Every job that has a ``queued`` event on the tokens topic ends (the others' jobs are
    short); a job stuck at ``queued`` after a refusal fails the wait."""
    async with events_reader(settings.kafka_bootstrap, settings.topics.tokens, 3) as log:

        def orphans(events: list[JobEvent]) -> set[str]:
            ended = {e.job_id for e in of_type(events, "completed", "failed", "cancelled")}
            return {e.job_id for e in of_type(events, "queued")} - ended

        await log.until(lambda ev: bool(ev) and not orphans(ev), timeout=30, what="no orphan job")


@pytest.mark.parametrize(("body", "field"), REFUSED)
async def test_a_refused_job_is_422_naming_the_field_and_leaves_nothing(
    api: Api, body: str, field: str
) -> None:
    r = await api.client.post("/v1/jobs", **raw(body))  # type: ignore[arg-type]
    refusal(r, 422, field)
    ok = await api.client.post("/v1/jobs", json={"prompt": "after", "max_tokens": 1}, headers=ALICE)
    assert ok.status_code == 202
    await no_orphans(api.settings)


async def test_a_batch_with_a_bad_value_is_refused_whole(api: Api) -> None:
    good = '{"prompt": "fine", "max_tokens": 1}'
    bad = f'{{"prompt": "hi", "metadata": {{"n": {2**70}}}}}'
    r = await api.client.post("/v1/batches", **raw(f'{{"jobs": [{good}, {bad}]}}'))  # type: ignore[arg-type]
    refusal(r, 422, "jobs[1].metadata.n")
    lines = f"{good}\n{bad.replace(str(2**70), 'NaN')}\n".encode()
    r = await api.client.post(
        "/v1/batches", content=lines, headers={**ALICE, "content-type": "application/x-ndjson"}
    )
    err = refusal(r, 422, "lines[1].metadata.n")
    assert "nothing was submitted" in err["message"]
    await no_orphans(api.settings)


async def test_a_body_that_is_not_utf8_json_is_400(api: Api) -> None:
    utf16 = json.dumps({"prompt": "hi"}).encode("utf-16")
    r = await api.client.post(
        "/v1/jobs", content=utf16, headers={**ALICE, "content-type": "application/json"}
    )
    assert refusal(r, 400, "body")["code"] == "invalid_json"


async def test_a_json_route_refuses_other_media_types_with_415(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**ALICE} | ({"content-type": content_type} if content_type else {})
        r = await api.client.post("/v1/jobs", content=b'{"prompt": "hi"}', headers=headers)
        assert refusal(r, 415, "Content-Type")["code"] == "unsupported_media_type"


async def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(40):  # 40 x 64 KiB: past the 1 MiB limit, with no Content-Length
            yield b"x" * 65536
        yield b'"}'

    r = await api.client.post("/v1/jobs", content=chunks(), headers=raw("")["headers"])  # type: ignore[arg-type]
    assert "content-length" not in r.request.headers
    assert refusal(r, 413, "body")["code"] == "payload_too_large"


ODD_IDS = ["nope", "x" * 10_000, "a\x01b\x7f?#", "01a2449c-9183-7a56-978f-E19B4AB5534E"]


@pytest.mark.parametrize("odd", ODD_IDS, ids=["word", "10kb", "control", "upper-case"])
async def test_an_id_we_did_not_issue_is_404_before_any_lookup(api: Api, odd: str) -> None:
    for method, template, field in [
        ("GET", "/v1/jobs/{}", "job_id"),
        ("GET", "/v1/jobs/{}/result", "job_id"),
        ("GET", "/v1/jobs/{}/events", "job_id"),
        ("POST", "/v1/jobs/{}/cancel", "job_id"),
        ("GET", "/v1/batches/{}", "batch_id"),
        ("POST", "/v1/batches/{}/pause", "batch_id"),
    ]:
        url = template.format(quote(odd, safe=""))
        r = await api.client.request(method, url, headers=ALICE)
        err = refusal(r, 404, field)
        assert len(err["message"]) < 200, "the id is not echoed whole"


async def test_json_output_that_is_not_json_fails_at_once(api: Api) -> None:
    r = await api.client.post(
        "/v1/jobs",
        json={"prompt": "not json", "max_tokens": 3, "response_format": "json"},
        headers=ALICE,
    )
    job = r.json()["job_id"]
    async with events_reader(api.settings.kafka_bootstrap, api.settings.topics.tokens, 3) as log:
        events = await log.until(lambda ev: bool(of_type(by_job(ev, job), "failed")))
    mine = by_job(events, job)
    (failed,) = of_type(mine, "failed")
    assert failed.error_kind == "invalid_output" and not failed.retryable
    assert failed.attempt == 1 and not of_type(mine, "retrying"), "a deterministic failure"
