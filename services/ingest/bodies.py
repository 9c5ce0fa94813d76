"""Request bodies of the ingest routes beyond ``JobRequest``, and the batch body's parser.

``POST /v1/batches`` takes ``{"jobs": [JobRequest…]}`` (``application/json``) or
JSONL (``application/x-ndjson`` or ``application/jsonl``: one JobRequest per
line; blank lines are skipped). Every job is checked before anything is
published. A bad job is named by its place: ``jobs[3].model`` for JSON (the
index in the list, from 0) and ``lines[3].model`` for JSONL (the index among
the body's lines, blank ones included, from 0 — so ``lines[3]`` is the 4th line,
which the message calls ``line 4``). The error's ``field`` is the first bad
job's path; its message lists up to ``MAX_REPORTED`` bad jobs. Pure; no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.jobs import JobRequest
from services.core import strict_json
from services.core.errors import ApiError
from services.core.http import JSON_TYPES, field_path, media_type

T = TypeVar("T")

JSONL_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
MAX_REPORTED = 20
"""Bad jobs listed in one error message."""


class CancelRequest(BaseModel):
    """Optional body of ``POST /v1/jobs/{id}/cancel`` and ``/v1/batches/{id}/cancel``."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a job sits in a batch body: ``jobs[i]`` (JSON) or ``lines[i]`` (JSONL)."""

    lines: bool
    index: int

    def path(self, inner: str | None = None) -> str:
        base = f"{'lines' if self.lines else 'jobs'}[{self.index}]"
        if not inner:
            return base
        return f"{base}{inner}" if inner.startswith("[") else f"{base}.{inner}"

    def label(self) -> str:
        return f"line {self.index + 1}" if self.lines else self.path()


@dataclass(frozen=True, slots=True)
class _Problem:
    place: Place
    field: str | None
    message: str

    def describe(self) -> str:
        where = self.place.label() + (f": {self.field}" if self.field else "")
        return f"{where}: {self.message}"


def parse_batch(
    body: bytes,
    content_type: str | None,
    max_jobs: int,
    build: Callable[[JobRequest], T],
) -> list[T]:
    """Every job of the body, passed through ``build``; or an ``ApiError`` naming what to fix.

    ``build`` may raise an ``ApiError`` with a ``field`` (e.g. the provider is not
    configured); it is reported like a validation error, at the job's place.
    """
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        raw = _json_jobs(body)
    elif kind in JSONL_TYPES:
        raw = _jsonl_jobs(body)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            'send a batch as application/json ({"jobs": [...]}) or as JSONL '
            "(application/x-ndjson or application/jsonl)",
            "Content-Type",
        )
    if not raw:
        raise ApiError(422, "invalid_request", "a batch needs at least one job", "jobs")
    if len(raw) > max_jobs:
        raise ApiError(
            413,
            "too_many_jobs",
            f"a batch holds at most {max_jobs} jobs; this one has {len(raw)}",
            "jobs",
        )
    out: list[T] = []
    problems: list[_Problem] = []
    for place, item in raw:
        try:
            req = JobRequest.model_validate(strict_json.loads(item) if place.lines else item)
            out.append(build(req))
        except ValidationError as exc:
            problems.append(_from_validation(place, exc))
        except ApiError as exc:
            inner = None if exc.field == "body" else exc.field
            problems.append(_Problem(place, inner, exc.message))
    if problems:
        raise _combined(problems, len(raw))
    return out


def _json_jobs(body: bytes) -> list[tuple[Place, Any]]:
    doc = strict_json.loads(body)
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid_request", 'the body must be {"jobs": [...]}', "body")
    unknown = sorted(set(doc) - {"jobs"})
    if unknown:
        raise ApiError(422, "invalid_request", "Extra inputs are not permitted", unknown[0])
    jobs = doc.get("jobs")
    if not isinstance(jobs, list):
        raise ApiError(422, "invalid_request", "'jobs' must be a list of jobs", "jobs")
    return [(Place(lines=False, index=i), job) for i, job in enumerate(jobs)]


def _jsonl_jobs(body: bytes) -> list[tuple[Place, Any]]:
    return [
        (Place(lines=True, index=i), line.strip())
        for i, line in enumerate(body.split(b"\n"))
        if line.strip()
    ]


def _from_validation(place: Place, exc: ValidationError) -> _Problem:
    first = exc.errors()[0]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return _Problem(place, field_path(tuple(first.get("loc", ()))), message)


def _combined(problems: list[_Problem], total: int) -> ApiError:
    first = problems[0]
    listed = "; ".join(p.describe() for p in problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    if more > 0:
        listed += f"; and {more} more"
    bad = "1 job is" if len(problems) == 1 else f"{len(problems)} of {total} jobs are"
    return ApiError(
        422,
        "invalid_request",
        f"{bad} invalid; nothing was submitted: {listed}",
        first.place.path(first.field),
    )
