"""What every HTTP face shares: the error shape, health probes and metrics.

Every error is ``{"error": {"code", "message", "field"}}`` with a 4xx that says
what to fix; handlers here turn FastAPI's validation errors and our
``ApiError`` into that shape so that no input produces a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.errors import ApiError, KafkaError
from services.core.metrics import JOBS_REJECTED

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else why not."""


class JsonResponse(Response):
    """A JSON response rendered by orjson."""

    media_type = "application/json"

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
    return error_response(422, "invalid_request", msg, field)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_r: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    async def on_validation(_r: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_error_response(exc)

    async def on_http(_r: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

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


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read whole."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
        response = error_response(
            413, "payload_too_large", f"the body is larger than {self.max_bytes} bytes", "body"
        )
        await response(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass
