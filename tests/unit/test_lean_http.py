"""uvicorn with ``LeanHttpToolsProtocol`` answers as uvicorn does: in order, and it tells
a long response's app when its client left."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from services.core.lean_http import LeanHttpToolsProtocol
from services.localdev.kafka import free_port


async def serving(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=LeanHttpToolsProtocol, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while not server.started:
        assert loop.time() < give_up, "the server did not start"
        await asyncio.sleep(0.01)
    return server, task, port


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b"[%s]" % scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server, task, port = await serving(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(3)))
        got = b""
        while got.count(b"\r\n0\r\n\r\n") < 3:  # three chunked bodies, ended
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, got
            got += chunk
        writer.close()
        await writer.wait_closed()
    finally:
        server.should_exit = True
        await task
    positions = [got.index(b"[/%d]" % i) for i in range(3)]
    assert positions == sorted(positions), got


async def test_a_long_response_learns_that_its_client_left() -> None:
    left = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"open", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        left.set_result(None)

    server, task, port = await serving(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b"open" not in got:
            got += await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(left, 10)
    finally:
        server.should_exit = True
        await task
