"""The operator's dashboard at ``/ui``: static pages that call the public API.

No build step: plain ES modules, CSS and SVG charts in ``static/``, served as
they are. Every path under ``/ui`` that is not a static file answers the one
page (``index.html``), which routes by path in the browser, so a job's link
``/ui/jobs/<id>`` can be opened, bookmarked and reloaded. The page holds the API
key in the tab's session storage only; it reads a job's stream with a stream
token (``POST /v1/jobs/{id}/stream-token``) because ``EventSource`` cannot send
a key. The content security policy allows the page's own origin and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def to_page(_request: Request) -> Response:
    return RedirectResponse("/ui", status_code=308)


def ui_routes() -> list[BaseRoute]:
    """``/ui`` and every page path under it, and ``/ui/static/*``."""
    return [
        Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"),
        Route("/ui", page, methods=["GET", "HEAD"]),
        Route("/ui/{path:path}", page, methods=["GET", "HEAD"]),
        Route("/", to_page, methods=["GET", "HEAD"]),
    ]
