"""A small SSE reader for tests: parses events as a browser's EventSource would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


class SseParser:
    """Lines in, events out, one line at a time (for sync and async readers alike)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """The event that ``line`` completes, if it completes one."""
        if line == "":
            done = None
            if self._data:
                done = SseEvent(self._id, self._event, orjson.loads("\n".join(self._data)))
            self._event, self._data = "message", []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def parse_sse_lines(lines: Iterator[str]) -> Iterator[SseEvent]:
    parser = SseParser()
    for line in lines:
        ev = parser.feed(line)
        if ev is not None:
            yield ev


def read_events(
    client: httpx.Client, path: str, headers: dict[str, str] | None = None, limit: int | None = None
) -> list[SseEvent]:
    """Events of one SSE response until the server closes it (or ``limit`` events)."""
    out: list[SseEvent] = []
    with client.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for ev in parse_sse_lines(resp.iter_lines()):
            out.append(ev)
            if limit is not None and len(out) >= limit:
                break
    return out


async def read_events_async(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    limit: int | None = None,
    received_us: list[int] | None = None,
) -> list[SseEvent]:
    """``read_events`` for an async client; ``received_us`` collects arrival times (µs)."""
    out: list[SseEvent] = []
    parser = SseParser()
    async with client.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            ev = parser.feed(line)
            if ev is None:
                continue
            out.append(ev)
            if received_us is not None:
                received_us.append(time.time_ns() // 1000)
            if limit is not None and len(out) >= limit:
                break
    return out
