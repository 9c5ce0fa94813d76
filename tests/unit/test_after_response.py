"""A response continued after the middleware stack returned is the same response."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.routing import Route

from services.core.after_response import AfterResponse, continue_after
from services.core.http import AsgiEndpoint


class Stamp:
    """A pure ASGI middleware that adds a header and counts the body's chunks."""

    def __init__(self, app: Any, log: list[str]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        chunks = 0

        async def stamped(message: dict[str, Any]) -> None:
            nonlocal chunks
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-stamp", b"yes")]
            else:
                chunks += 1
                message["body"] += b"#%d" % chunks
            await send(message)

        await self.app(scope, receive, stamped)
        self.log.append("middleware returned")


def app_with(log: list[str]) -> FastAPI:
    async def rest(send: Any) -> None:
        log.append("rest")
        await send({"type": "http.response.body", "body": b" world", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        if not continue_after(scope, partial(rest, send)):
            await rest(send)

    app = FastAPI()
    app.router.routes.append(Route("/long", AsgiEndpoint(endpoint), methods=["GET"]))
    app.add_middleware(Stamp, log=log)
    app.add_middleware(AfterResponse)
    return app


async def test_the_rest_of_a_response_runs_after_the_stack_and_through_its_send() -> None:
    log: list[str] = []
    transport = httpx.ASGITransport(app=app_with(log))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/long")
    assert r.status_code == 200
    assert r.headers["x-stamp"] == "yes"
    assert r.content == b"hello#1 world#2#3", "every chunk went through the middleware's send"
    assert log == ["middleware returned", "rest"]


async def test_other_requests_are_served_as_before() -> None:
    transport = httpx.ASGITransport(app=app_with([]))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/nowhere")
    assert r.status_code == 404
