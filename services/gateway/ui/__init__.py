"""The operator's dashboard at ``/ui``: static pages that call the public API.

No build step: plain ES modules, CSS and SVG charts in ``static/``, served as
they are. Every path under ``/ui`` that is not a static file answers the one
page (``index.html``), which routes by path in the browser, so a job's link
``/ui/jobs/<id>`` can be opened, bookmarked and reloaded. The page holds the API
key in the tab's session storage only; it reads a job's stream with a stream
token (``POST /v1/jobs/{id}/stream-token``) because ``EventSource`` cannot send
a key. The content security policy allows the page's own origin and nothing else
(no inline script or style: sizes are set through the CSSOM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class StaticNoCache(StaticFiles):
    """The page's modules and stylesheet, revalidated on every load (``no-cache`` with their
    ETag), so a browser never runs an old module beside a new one after an upgrade."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def page(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def to_page(_request: Request) -> Response:
    return RedirectResponse("/ui", status_code=308)


def ui_routes() -> list[BaseRoute]:
    """``/ui`` and every page path under it, and ``/ui/static/*``."""
    return [
        Mount("/ui/static", app=StaticNoCache(directory=STATIC), name="ui-static"),
        Route("/ui", page, methods=["GET", "HEAD"]),
        Route("/ui/{path:path}", page, methods=["GET", "HEAD"]),
        Route("/", to_page, methods=["GET", "HEAD"]),
    ]
