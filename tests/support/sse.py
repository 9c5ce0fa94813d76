"""A small SSE reader for tests: parses events as a browser's EventSource would."""

from __future__ import annotations

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


def parse_sse_lines(lines: Iterator[str]) -> Iterator[SseEvent]:
    ev_id: str | None = None
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(ev_id, event, orjson.loads("\n".join(data)))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            ev_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


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
