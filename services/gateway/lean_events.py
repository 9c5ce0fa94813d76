"""``GET /v1/jobs/{job_id}/events`` served without FastAPI's request machinery.

An SSE stream lives as long as its job, and for all that time the coroutines of
the route that opened it stay suspended with their locals: FastAPI's request
handler, its dependency results and the ``AsyncExitStack`` it keeps per request
held about a third of the memory of an idle stream (tracemalloc, 1,000 streams:
``fastapi/routing.py`` 5.4 KB and ``contextlib.py`` 2.3 KB of 30.4 KB per
stream). This endpoint is a plain ASGI app that the app's router tries before
the documented route (``router.job_events``, which stays for the OpenAPI); the
middlewares and the exception handlers still apply, and it makes the same checks
in FastAPI's order, so every answer is the same:

404 an id that is not one we issue; 422 a ``last_event_id`` query parameter, then a
``Last-Event-ID`` header, not an offset; then ``router.events_response`` (401, 422,
204 or the stream).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.datastructures import Headers, QueryParams
from starlette.routing import Route

from services.core.access import Access
from services.core.http import AsgiEndpoint
from services.core.ids import is_issued_id
from services.core.path_ids import not_found
from services.gateway.router import events_response
from services.gateway.sse import LAST_EVENT_ID_PATTERN
from services.gateway.watch import Watches

_CURSOR: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(pattern=LAST_EVENT_ID_PATTERN)]
)


def well_formed_cursor(value: str | None, where: str, name: str) -> str | None:
    """``value`` when it has an offset's shape; else the 422 FastAPI gives a parameter
    declared with ``pattern=LAST_EVENT_ID_PATTERN``."""
    if value is None:
        return None
    try:
        return _CURSOR.validate_python(value)
    except ValidationError as exc:
        errors = [{**e, "loc": (where, name)} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


def lean_events_route(path: str, access: Access, watches: Watches) -> Route:
    """The route serving ``GET path``; add it before the FastAPI route."""

    async def events(scope: Any, receive: Any, send: Any) -> None:
        job_id: str = scope["path_params"]["job_id"]
        if not is_issued_id(job_id):
            raise not_found("job", job_id)
        query = QueryParams(scope["query_string"])
        headers = Headers(scope=scope)
        in_query = well_formed_cursor(query.get("last_event_id"), "query", "last_event_id")
        in_header = well_formed_cursor(headers.get("last-event-id"), "header", "Last-Event-ID")
        cursor = in_header or in_query
        response = await events_response(
            access, watches, job_id, headers, query.get("token"), cursor
        )
        await response(scope, receive, send)

    route = Route(path, AsgiEndpoint(events), methods=["GET"], include_in_schema=False)
    route.methods = {"GET"}  # Starlette adds HEAD to a GET route; the documented one has none
    return route
