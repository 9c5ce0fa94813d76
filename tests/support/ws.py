"""A small websocket reader for tests: the gateway's JSON messages, as SSE events are parsed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.support.sse import SseEvent

OPEN_TIMEOUT_S = 30.0


@dataclass
class WsRead:
    """What one websocket connection received, and how it ended."""

    events: list[SseEvent] = field(default_factory=list)
    opened_at_us: int = 0
    """When the handshake completed (µs since the epoch, comparable to an event's ``ts``)."""
    close_code: int | None = None
    """The server's close code; None if the client left first (``limit`` reached)."""
    close_reason: str = ""


def ws_url(base: str, job_id: str, **query: str) -> str:
    """The websocket URL of a job's events on the HTTP face at ``base``."""
    url = base.replace("http://", "ws://", 1) + f"/v1/jobs/{job_id}/ws"
    return f"{url}?{urlencode(query)}" if query else url


def _event(message: str | bytes) -> SseEvent:
    assert isinstance(message, str), f"expected a text message, got {message!r}"
    body = orjson.loads(message)
    assert set(body) == {"id", "event", "data"}, body
    assert isinstance(body["id"], str)
    return SseEvent(body["id"], body["event"], body["data"])


async def read_ws(
    url: str, headers: dict[str, str] | None = None, limit: int | None = None
) -> WsRead:
    """Messages of one websocket until the server closes it (or ``limit`` messages)."""
    out = WsRead()
    async with connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S) as ws:
        out.opened_at_us = time.time_ns() // 1000
        try:
            async for message in ws:
                out.events.append(_event(message))
                if limit is not None and len(out.events) >= limit:
                    return out
        except ConnectionClosedError:
            pass  # a close code other than 1000/1001: recorded below for the test to judge
        out.close_code = ws.close_code
        out.close_reason = ws.close_reason or ""
    return out


async def ws_denial(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body with which the server refuses the handshake."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S):
            pass
    except InvalidStatus as exc:
        body: dict[str, Any] = orjson.loads(exc.response.body or b"null")
        return exc.response.status_code, body
    raise AssertionError(f"the server accepted the websocket {url}")
