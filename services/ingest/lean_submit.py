"""``POST /v1/jobs`` served without FastAPI's request machinery.

A submission is the public face's hottest request. Under ``tokenrelay bench
ingest`` FastAPI's handler around it — a ``Request`` wrapper, dependency
solving for the key and the header, the body validated into a model field, a
``Response`` object — took about a third of the process's CPU per submission
(py-spy; ``docs/performance.md``). This endpoint is a plain ASGI app that the
app's router tries before the documented route (``router.submit_job``, which
stays for the OpenAPI): the middlewares and the exception handlers still apply,
and it makes the same checks in FastAPI's order with the same functions, so
every answer is the same:

413 body over the limit, 415 not JSON, 400/422 not strict JSON (``http.read_strict_body``),
401 no or an unknown key, 422 an ``Idempotency-Key`` over its length, 422 the
body against ``JobRequest`` (naming the field, through the app's validation handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Route

from schemas.jobs import JobRequest
from services.core.access import Access
from services.core.auth import Principal
from services.core.errors import ApiError
from services.core.http import (
    AsgiEndpoint,
    StrictRequest,
    accepts_event_stream,
    read_strict_body,
)
from services.core.idempotency import idempotency_key

Accept = Callable[[JobRequest, Principal, str | None, bool], Awaitable[Response]]
"""What answers a valid submission (the last argument: the client asked for its event
stream): ``router``'s ``accept``."""


NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"
"""FastAPI's message for a body model given JSON that is not an object."""


def job_request(value: Any, sent: bool) -> JobRequest:
    """The parsed body (``sent``: the request had one) as a ``JobRequest``; a
    ``RequestValidationError`` (the app's 422 naming the field) when it is not one, as
    FastAPI would raise for a body parameter."""
    if not sent:
        raise ApiError(422, "invalid_request", "a JSON body is required", "body")
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", NOT_AN_OBJECT, "body")
    try:
        return JobRequest.model_validate(value)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


def lean_submit_route(path: str, access: Access, accept: Accept) -> Route:
    """The route serving ``POST path`` with ``accept``; add it before the FastAPI route."""

    async def submit(scope: Any, receive: Any, send: Any) -> None:
        request = StrictRequest(scope, receive)
        value = await read_strict_body(request)
        who = access.principal(request)
        key = idempotency_key(request.headers)
        sent = bool(await request.body())  # read once already; Starlette keeps it
        stream = accepts_event_stream(request.headers.get("accept"))
        response = await accept(job_request(value, sent), who, key, stream)
        await response(scope, receive, send)

    return Route(path, AsgiEndpoint(submit), methods=["POST"], include_in_schema=False)
