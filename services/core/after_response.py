"""Long responses that outlive the middleware stack which started them.

An SSE stream lives as long as its job. Served like any response, it keeps the
whole stack suspended above it for that time: a coroutine frame per middleware,
the router's, Starlette's exception handling and FastAPI's ``AsyncExitStack``
(about 7 KB of a 25 KB idle stream, tracemalloc over 1,000 streams:
``bench/idle_memory.py``).

So the outermost of our middlewares (``AfterResponse``) offers each HTTP request
a slot, ``continue_after``. A route that has sent its response's start through the
stack, as every response does, may leave the rest of its body there and return:
the stack unwinds, and the rest runs here, in the same task and context,
writing with the very ``send`` (and reading with the ``receive``) the route was
given. Whatever the middlewares do to a response (CORS headers, the status a
telemetry or error middleware records, the body limit on ``receive``) they did
to its start or do inside those callables, so the answer is the same byte for
byte; only their coroutine frames are gone.

``AfterResponse`` stays inside Starlette's error middleware and FastAPI's
exception telemetry (and FastAPI's HTTP span, which it opens around the whole
app): an error the rest raises is logged, counted and traced as one raised by
any response already started. The middlewares inside it are plain ASGI ones
that act on the messages, never on when the app returns (a
``BaseHTTPMiddleware`` would end the body when it does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

Rest = Callable[[], Awaitable[None]]

_KEY = "tokenrelay.after_response"
FASTAPI_EXIT_STACK = "fastapi_middleware_astack"


def continue_after(scope: MutableMapping[str, Any], rest: Rest) -> bool:
    """Run ``rest`` once the middleware stack has returned; False (the caller runs it
    itself) when the app has no ``AfterResponse`` layer."""
    slot = scope.get(_KEY)
    if slot is None or slot:
        return False
    slot.append(rest)
    return True


class AfterResponse:
    """ASGI middleware, added last: runs what a route left for after the stack returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot: list[Rest] = []
        scope[_KEY] = slot
        await self.app(scope, receive, send)
        if slot:
            # FastAPI's exit stack, closed when its middleware returned, stays in the scope
            # (which the server keeps for the connection's life): 0.8 KB an idle stream.
            scope.pop(FASTAPI_EXIT_STACK, None)
            await slot.pop()()
