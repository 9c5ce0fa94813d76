"""Web pages on other origins: CORS for HTTP, an ``Origin`` check for websockets.

``TOKENRELAY_CORS_ORIGINS`` names the origins whose pages may call the API:
their requests (and the browser's preflights) get the ``Access-Control-*``
headers, so ``fetch`` with an API key and ``EventSource`` with a stream token
work from them; a page of any other origin gets no such header and the browser
keeps the answer from it. Credentials travel in headers or the stream token,
never cookies, so no origin is ever allowed credentials.

Browsers send an ``Origin`` with a websocket handshake but apply no CORS to it:
the gateway refuses the handshake itself (403) when the origin is neither
allowed nor the API's own. A client that sends no ``Origin`` (not a browser) is
not affected.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from services.core.errors import ApiError

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-API-Key"]
EXPOSED_HEADERS = ["Retry-After", "Allow"]
PREFLIGHT_MAX_AGE_S = 600


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Answer preflights and mark answers for ``origins`` (the outermost of our middlewares)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )


def websocket_origin_allowed(origins: list[str], headers: Mapping[str, str]) -> bool:
    """Whether a websocket handshake with these headers may go on: no ``Origin`` (not a
    browser), the API's own origin, or one of ``origins`` (``*``: any)."""
    origin = headers.get("origin")
    if origin is None or "*" in origins or origin in origins:
        return True
    host = headers.get("host")
    return host is not None and origin.split("://", 1)[-1] == host


def origin_refused() -> ApiError:
    return ApiError(403, "forbidden", "pages of this origin may not open streams", "Origin")
