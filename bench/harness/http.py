"""A minimal HTTP/1.1 client on raw asyncio streams, cheap enough to submit thousands of jobs
a second from one process without the client becoming what is measured.

Requests go over keep-alive connections held in a ``Pool``; a response is read by its
``Content-Length`` (every JSON answer of the stack and of the baseline has one).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson


class HttpError(Exception):
    """The server closed or answered something that is not an HTTP/1.1 response."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    api_key: str | None

    def head(self, method: str, path: str, extra: str = "") -> bytes:
        auth = f"Authorization: Bearer {self.api_key}\r\n" if self.api_key else ""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}{extra}"
        ).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one response with a ``Content-Length``."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, head, body


class Pool:
    """``size`` keep-alive connections to ``endpoint``; ``post`` borrows one per request."""

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self.endpoint = endpoint
        self.size = size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._opened = 0

    async def _borrow(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle.empty() and self._opened < self.size:
            self._opened += 1
            return await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
        return await self._idle.get()

    async def get(self, path: str) -> tuple[int, dict[str, object]]:
        """GET ``path``; the status and the decoded answer."""
        status, answer, _ = await self._request("GET", path, "\r\n")
        return status, answer

    async def post(self, path: str, body: dict[str, object]) -> tuple[int, dict[str, object], int]:
        """POST ``body`` as JSON; the status, the decoded answer, and when (µs since the epoch)
        the request went out, so that waiting for a free connection is not counted."""
        data = orjson.dumps(body)
        extra = f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        return await self._request("POST", path, extra, data)

    async def _request(
        self, method: str, path: str, extra: str, data: bytes = b""
    ) -> tuple[int, dict[str, object], int]:
        """One request on a borrowed connection, given back after the answer (closed on an
        error); the status, the decoded answer and when the request went out."""
        reader, writer = await self._borrow()
        try:
            sent_us = time.time_ns() // 1000
            writer.write(self.endpoint.head(method, path, extra) + data)
            status, _, answer = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError) as exc:
            writer.close()
            self._opened -= 1
            raise HttpError(f"{method} {path}: {exc!r}") from exc
        self._idle.put_nowait((reader, writer))
        return status, orjson.loads(answer) if answer else {}, sent_us

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait()[1].close()
