"""uvicorn's httptools protocol, 2.2 KB lighter per open connection.

A gateway holds a connection open per SSE stream, for as long as the job runs,
and most of them are idle. uvicorn's HTTP protocol keeps three empty deques per
connection: the queue of pipelined requests, and the waiters of two
``asyncio.Event``s (the request's messages and the flow control). An empty deque
takes 760 B with its first block; an empty list 56 B, and these never hold more
than one item but for a pipelined request, which is rare. So this protocol swaps
them for lists as soon as uvicorn made them (tracemalloc over 1,000 idle streams:
``bench/idle_memory.py``).

httptools rather than h11: h11's protocol costs about 0.5 KB less per
connection, but it parses in Python, and it keeps the same two events.

Only the containers change; the protocol behaves as uvicorn's (uvicorn is pinned
in ``pyproject.toml``: check this on an upgrade). A container that is not an
empty deque (uvicorn changed) is left as it is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Pipeline(list[Any]):
    """The queue of pipelined requests as a list: ``appendleft`` in, ``pop`` out."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


def _lighten(event: asyncio.Event) -> None:
    """The event's waiters in a list (``wait`` appends and removes, ``set`` iterates)."""
    waiters = getattr(event, "_waiters", None)
    if isinstance(waiters, deque) and not waiters:
        event._waiters = []  # type: ignore[assignment]


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn.Config(http=LeanHttpToolsProtocol)``: see the module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.pipeline, deque) and not self.pipeline:
            self.pipeline = _Pipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _lighten(self.flow._is_writable_event)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None:
            _lighten(self.cycle.message_event)
