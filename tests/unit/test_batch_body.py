import orjson
import pytest

from schemas.jobs import JobRequest, Priority
from services.core.errors import ApiError
from services.ingest.bodies import parse_batch

JSON = "application/json"
JSONL = "application/x-ndjson"


def same(req: JobRequest) -> JobRequest:
    return req


def refuse_openai(req: JobRequest) -> JobRequest:
    if req.provider == "openai":
        raise ApiError(422, "invalid_request", "the openai provider is not configured", "provider")
    return req


def jsonl(*lines: object) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines)


def error(body: bytes, content_type: str | None, max_jobs: int = 100) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_batch(body, content_type, max_jobs, refuse_openai)
    return caught.value


def test_json_and_jsonl_give_the_same_jobs() -> None:
    jobs = [{"prompt": "a"}, {"prompt": "b", "priority": "high"}]
    from_json = parse_batch(orjson.dumps({"jobs": jobs}), f"{JSON}; charset=utf-8", 10, same)
    from_jsonl = parse_batch(jsonl(*jobs) + b"\n\n", "application/jsonl", 10, same)
    assert from_json == from_jsonl
    assert [j.priority for j in from_json] == [Priority.NORMAL, Priority.HIGH]


def test_a_bad_json_job_is_named_by_its_index_and_field() -> None:
    body = orjson.dumps({"jobs": [{"prompt": "ok"}, {"prompt": "x", "model": ""}]})
    err = error(body, JSON)
    assert (err.status, err.code, err.field) == (422, "invalid_request", "jobs[1].model")
    assert "jobs[1]: model:" in err.message
    assert "nothing was submitted" in err.message


def test_a_bad_jsonl_line_is_named_by_its_line_counting_blank_ones() -> None:
    body = jsonl({"prompt": "ok"}, b"", {"prompt": "ok"}, {"prompt": "x", "max_tokens": -1})
    err = error(body, JSONL)
    assert err.field == "lines[3].max_tokens"
    assert err.message.startswith("1 job is invalid; nothing was submitted: line 4: max_tokens:")


def test_nested_fields_and_whole_job_errors_have_paths() -> None:
    body = jsonl({"messages": [{"role": "robot", "content": "x"}]}, {"model": "m"})
    err = error(body, JSONL)
    assert err.field == "lines[0].messages[0].role"
    assert "line 2: give exactly one of 'prompt' and 'messages'" in err.message


def test_a_line_that_is_not_json_is_reported_like_a_bad_job() -> None:
    err = error(jsonl({"prompt": "ok"}, b'{"prompt": '), JSONL)
    assert (err.status, err.field) == (422, "lines[1]")
    assert "line 2: not valid JSON" in err.message


def test_a_job_the_build_step_refuses_is_named_too() -> None:
    err = error(orjson.dumps({"jobs": [{"prompt": "a", "provider": "openai"}]}), JSON)
    assert err.field == "jobs[0].provider"


def test_every_bad_job_is_counted_and_twenty_are_listed() -> None:
    err = error(jsonl(*[{"prompt": ""}] * 25), JSONL)
    assert err.field == "lines[0].prompt"
    assert err.message.startswith("25 of 25 jobs are invalid")
    assert "line 20: prompt" in err.message
    assert "line 21" not in err.message
    assert err.message.endswith("and 5 more")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b'{"jobs": [', 400, "invalid_json", "body"),
        (b"[]", 422, "invalid_request", "body"),
        (b'{"jobs": {}}', 422, "invalid_request", "jobs"),
        (b"{}", 422, "invalid_request", "jobs"),
        (b'{"jobs": []}', 422, "invalid_request", "jobs"),
        (b'{"jobs": [], "extra": 1}', 422, "invalid_request", "extra"),
    ],
)
def test_the_json_body_shape(body: bytes, status: int, code: str, field: str) -> None:
    err = error(body, JSON)
    assert (err.status, err.code, err.field) == (status, code, field)


def test_an_empty_jsonl_body_and_an_unknown_content_type() -> None:
    assert error(b"\n \n", JSONL).field == "jobs"
    err = error(b"{}", "text/plain")
    assert (err.status, err.field) == (415, "Content-Type")
    assert error(b"{}", None).status == 415


def test_more_jobs_than_allowed_is_413_naming_jobs() -> None:
    err = error(jsonl(*[{"prompt": "a"}] * 4), JSONL, max_jobs=3)
    assert (err.status, err.code, err.field) == (413, "too_many_jobs", "jobs")
    assert parse_batch(jsonl(*[{"prompt": "a"}] * 3), JSONL, 3, same)
