"""What every HTTP face shares: the error shape, health probes and metrics.

Every error is ``{"error": {"code", "message", "field"}}`` with a 4xx that says
what to fix; handlers here turn FastAPI's validation errors and our
``ApiError`` into that shape so that no input produces a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.core import strict_json
from services.core.errors import ApiError, KafkaError
from services.core.metrics import JOBS_REJECTED

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else why not."""


class JsonResponse(JSONResponse):
    """A JSON response rendered by orjson (a ``JSONResponse``, so the OpenAPI shows its model)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    return {"error": err}


KAFKA_RETRY_AFTER_S = 2
"""What a 503 ``kafka_unavailable`` tells a client to wait (``Retry-After``)."""


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    JOBS_REJECTED.labels(code).inc()
    return JsonResponse(error_body(code, message, field), status_code=status, headers=headers)


def kafka_unavailable(message: str) -> ApiError:
    """The 503 for when Kafka did not confirm in time: the client retries after a pause."""
    return ApiError(
        503, "kafka_unavailable", message, headers={"Retry-After": str(KAFKA_RETRY_AFTER_S)}
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """``("body", "messages", 0, "role")`` → ``"messages[0].role"``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not str(p).startswith(("function-", "union[")):
            out += f".{p}" if out else str(p)
    return out or None


def validation_error_response(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the body is not valid JSON", "body")
    field = field_path(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing" and field is None:
        return error_response(422, "invalid_request", "a JSON body is required", "body")
    return error_response(422, "invalid_request", msg, field or "body")


HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
"""Our ``code`` for the errors Starlette raises itself (its 405 carries ``Allow``)."""


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(routes: list[Any], scope: MutableMapping[str, Any]) -> str:
    """Every method some route takes at the request's path, as Starlette's routing decides
    (its own 405 names only the methods of the first route that matched the path)."""
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_r: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    async def on_validation(_r: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_error_response(exc)

    async def on_http(r: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(r.app.router.routes, r.scope)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def on_kafka(r: Request, exc: Exception) -> Response:
        log.warning("%s %s: Kafka failed: %s", r.method, r.url.path, exc)
        err = kafka_unavailable("Kafka did not answer; retry shortly")
        return error_response(err.status, err.code, err.message, headers=err.headers)

    async def on_unexpected(r: Request, exc: Exception) -> Response:
        log.error("%s %s failed", r.method, r.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has the details")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(KafkaError, on_kafka)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def health_router(checks: list[ReadinessCheck]) -> APIRouter:
    """``/healthz`` (the process runs), ``/readyz`` (every check passes), ``/metrics``."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        reasons = [r for r in [await check() for check in checks] if r]
        if reasons:
            return JsonResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JsonResponse({"status": "ready"})

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


JSON_TYPES = frozenset({"application/json"})
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def media_type(content_type: str | None) -> str:
    """``"application/json; charset=utf-8"`` → ``"application/json"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


EVENT_STREAM = "text/event-stream"


def accepts_event_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header lists ``text/event-stream`` (with a quality above 0)."""
    for media_range in (accept or "").split(","):
        kind, *params = media_range.split(";")
        if kind.strip().lower() != EVENT_STREAM:
            continue
        q = next((p.split("=", 1)[1] for p in params if p.strip().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True  # a malformed quality is ignored, as if it were absent
    return False


class StrictRequest(Request):
    """A request whose JSON body is read by ``strict_json``, not Python's lenient ``json``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """The route class of every router: the body is read and judged before FastAPI sees it.

    A body over the limit is a 413 (FastAPI would call a failed read a 400), a
    JSON route's body in another media type a 415 (FastAPI would validate the
    bytes and answer 422), and the JSON is strict (``strict_json``). All of it
    happens before the handler runs, so a refused request has done nothing.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_json = self.body_field is not None

        async def strict(request: Request) -> Response:
            request = StrictRequest(request.scope, request.receive)
            if request.method not in _NO_BODY:
                await read_strict_body(request, takes_json)
            return await handler(request)

        return strict


async def read_strict_body(request: StrictRequest, takes_json: bool = True) -> Any:
    """Read the body whole and judge it: 413 over the limit, and for a JSON route a
    non-JSON media type 415 and a body that is not strict JSON 400/422. Returns the
    parsed value (None for an empty body or a route that takes no JSON)."""
    try:
        body = await request.body()
    except _BodyTooLargeError as exc:
        raise body_too_large(request.scope) from exc
    if not (takes_json and body):
        return None
    if media_type(request.headers.get("content-type")) not in JSON_TYPES:
        raise ApiError(
            415, "unsupported_media_type", "send the body as application/json", "Content-Type"
        )
    return await request.json()


def body_too_large(scope: Any) -> ApiError:
    limit = scope.get(BODY_LIMIT_KEY, 0)
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes", "body")


BODY_LIMIT_KEY = "tokenrelay.max_body_bytes"


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read whole."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[BODY_LIMIT_KEY] = self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLargeError:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        err = body_too_large(scope)
        await error_response(err.status, err.code, err.message, err.field)(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass


class AsgiEndpoint:
    """Marks a coroutine function as an ASGI app for Starlette's ``Route`` (which would
    otherwise call a plain function with a ``Request``): the endpoint of a lean route,
    one the app tries before FastAPI's documented route for the same path."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
