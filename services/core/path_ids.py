"""Job and batch ids in a path: the shape we issue, or 404 before any lookup.

An id reaches the aggregator's URL, Kafka lookups and log lines; one that is
not a UUIDv7 in canonical form names nothing we hold, so it is answered 404 at
once (as an id of another tenant is: ids cannot be probed) and never used.
The OpenAPI documents the pattern so that generated clients know it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from services.core.errors import ApiError
from services.core.ids import ID_PATTERN, is_issued_id

_SHOWN = 80
"""Characters of a malformed id repeated in the error message."""


def _shown(text: str) -> str:
    short = text[:_SHOWN] + ("…" if len(text) > _SHOWN else "")
    return short.encode("unicode_escape").decode("ascii") if not short.isprintable() else short


def not_found(kind: str, value: str) -> ApiError:
    return ApiError(404, "not_found", f"no {kind} {_shown(value)}", f"{kind}_id")


def _id_path(description: str) -> object:
    return Path(description=description, json_schema_extra={"pattern": ID_PATTERN})


async def _job_id(job_id: Annotated[str, _id_path("A job id, as POST /v1/jobs answered.")]) -> str:
    if not is_issued_id(job_id):
        raise not_found("job", job_id)
    return job_id


async def _batch_id(
    batch_id: Annotated[str, _id_path("A batch id, as POST /v1/batches answered.")],
) -> str:
    if not is_issued_id(batch_id):
        raise not_found("batch", batch_id)
    return batch_id


# Coroutines, so FastAPI calls them on the loop: a plain function dependency runs in its
# thread pool, a hand-off per request.
JobId = Annotated[str, Depends(_job_id)]
BatchId = Annotated[str, Depends(_batch_id)]
