"""What the OpenAPI says a route answers besides its 2xx: our error body, with its codes.

Each route lists the statuses it can answer (``error_responses(401, 404, …)``),
each documented with ``ErrorBody`` and, for 429 and 503, ``Retry-After``.
FastAPI's own 422 shape is never documented: ours replaces it. The events a
stream carries are described by ``JobEvent``, which no route returns as a
model, so ``install`` adds it to the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from schemas.api import ErrorBody
from schemas.events import JobEvent
from schemas.jobs import FakeProviderOptions
from schemas.limits import JSON_VALUE_SCHEMA

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
ERRORS: dict[int, str] = {
    400: "The body is not UTF-8 JSON (`invalid_json`), or a header is malformed.",
    401: "No API key, an unknown one, or a stream token that is invalid or for another job.",
    402: "The tenant spent its USD budget of the day or month (`budget_exceeded`); "
    "the message gives the figures and when it resets, `Retry-After` the seconds.",
    403: "The key's role may not do this (`forbidden`).",
    404: "No such job or batch for this key (another tenant's reads as absent).",
    405: "The path does not take this method; `Allow` lists the ones it takes.",
    406: "`Accept: text/event-stream` where this process serves no streams (`not_acceptable`).",
    409: "The job is not in a state that allows this (`not_finished`, `conflict`).",
    413: "The body or the batch is too large (`payload_too_large`, `too_many_jobs`).",
    415: "The body's media type is not one this route reads (`unsupported_media_type`).",
    422: "A field is invalid (`invalid_request`, `too_expensive`); `field` names it.",
    429: "Too many requests from this key (`rate_limited`), or the tenant's jobs per minute "
    "or tokens per day are used up (`quota_exceeded`); wait `Retry-After` seconds.",
    503: "Kafka, the job state or ClickHouse did not answer in time; retry after `Retry-After`.",
}


ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def error_responses(*codes: int, explicit: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that can answer these error statuses.

    ``explicit`` spells out the media type, for a route whose own answers are not
    JSON (FastAPI would document the errors in the route's media type).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": ERRORS[code]}
        entry |= {"content": ERROR_CONTENT} if explicit else {"model": ErrorBody}
        if code in (402, 429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


def job_links(source: str) -> dict[str, Any]:
    """OpenAPI links from an answer that holds a ``job_id`` (at JSON pointer ``source``)."""
    job = {"job_id": f"$response.body#{source}"}
    return {
        "GetJob": {"operationId": "get_job", "parameters": job},
        "GetResult": {"operationId": "get_result", "parameters": job},
        "WatchJob": {"operationId": "job_events", "parameters": job},
        "CancelJob": {"operationId": "cancel_job", "parameters": job},
    }


def batch_links() -> dict[str, Any]:
    """OpenAPI links from ``POST /v1/batches``'s answer."""
    batch = {"batch_id": "$response.body#/batch_id"}
    return {
        "GetBatch": {"operationId": "get_batch", "parameters": batch},
        "PauseBatch": {"operationId": "pause_batch", "parameters": batch},
        "ResumeBatch": {"operationId": "resume_batch", "parameters": batch},
        "CancelBatch": {"operationId": "cancel_batch", "parameters": batch},
        "GetFirstJob": {
            "operationId": "get_job",
            "parameters": {"job_id": "$response.body#/job_ids/0"},
        },
    }


def install(app: FastAPI, default_provider: str) -> None:
    """``app.openapi()`` with what FastAPI cannot say by itself (``_complete``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _complete(schema, default_provider)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any], default_provider: str) -> None:
    """The event schemas, the values ``metadata`` may hold, and parameters as sent.

    * ``JobEvent`` (what a stream carries) is no route's model: it is added.
    * ``metadata`` and ``provider_options`` hold ``JsonValue``s, and the fake
      provider's options have a shape of their own: ``provider_options`` must be
      ``FakeProviderOptions`` whenever the job runs on it (this deployment's
      default is ``default_provider``).
    * A query parameter or header is absent or a string: never ``null``.
    * An event stream's events are described one by one (``itemSchema``).
    """
    found = schema.setdefault("components", {}).setdefault("schemas", {})
    event = TypeAdapter(JobEvent).json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    for name, definition in event.pop("$defs", {}).items():
        found.setdefault(name, definition)
    found["JobEvent"] = event
    found["JsonValue"] = JSON_VALUE_SCHEMA
    found["FakeProviderOptions"] = FakeProviderOptions.model_json_schema()
    _free_form_values(found["JobRequest"], default_provider)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                _not_null(param["schema"])
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None and "itemSchema" in stream:
                    stream.pop("schema", None)


def _free_form_values(request: dict[str, Any], default_provider: str) -> None:
    props = request["properties"]
    for name in ("metadata", "provider_options"):
        props[name]["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}
    on_fake: dict[str, Any] = (
        {"properties": {"provider": {"not": {"const": "openai"}}}}
        if default_provider == "fake"
        else {"properties": {"provider": {"const": "fake"}}, "required": ["provider"]}
    )
    request["allOf"] = [
        {
            "if": on_fake,
            "then": {
                "properties": {
                    "provider_options": {"$ref": "#/components/schemas/FakeProviderOptions"}
                }
            },
        }
    ]


def _not_null(param: dict[str, Any]) -> None:
    choices = param.get("anyOf")
    if choices is None:
        return
    if param.get("default", "") is None:
        param.pop("default")
    kept = [c for c in choices if c.get("type") != "null"]
    if len(kept) == 1:
        param.pop("anyOf")
        param.update(kept[0])
    else:
        param["anyOf"] = kept
