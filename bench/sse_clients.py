"""Thousands of SSE streams in one process, each read as cheaply as Python allows.

Runs in its own process (``Remote(…, run, host, port, api_key)``) so that reading
the streams never shares a core's time slice with the gateway's event loop. A
stream is a raw asyncio connection (uvloop when installed): one ``GET`` request,
the chunked body undone, split into SSE events on blank lines. An event's fields
are only looked at as far as the figures need: every token's ``ts`` (the
producer's clock, µs) against this process's clock when the event is parsed,
and its ``index``, to count gaps.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.processes import serve_commands, use_uvloop

TERMINAL = frozenset({b"completed", b"failed", b"cancelled"})
READ_BYTES = 65536


class StreamError(Exception):
    """The stream did not answer as an SSE stream should."""


class Dechunker:
    """Undoes HTTP/1.1 chunked transfer coding, whatever the read boundaries."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0
        self._crlf = False
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = []
        while not self.ended:
            if self._left:
                take = bytes(self._buf[: self._left])
                del self._buf[: len(take)]
                self._left -= len(take)
                out.append(take)
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(self._buf) < 2:
                    break
                del self._buf[:2]
                self._crlf = False
            end = self._buf.find(b"\r\n")
            if end < 0:
                break
            size = int(self._buf[:end].split(b";", 1)[0], 16)
            del self._buf[: end + 2]
            self.ended = size == 0
            self._left = size
        return b"".join(out)


async def sse_events(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The SSE events of a chunked response body as they arrive, without their blank lines."""
    body, buf = Dechunker(), b""
    while not body.ended:
        data = await reader.read(READ_BYTES)
        if not data:
            return
        *events, buf = (buf + body.feed(data)).split(b"\n\n")
        for event in events:
            yield event


def sse_fields(event: bytes) -> tuple[bytes, bytes]:
    """An SSE event's ``event:`` and ``data:`` values (empty when it has none)."""
    kind = data = b""
    for line in event.split(b"\n"):
        if line.startswith(b"event: "):
            kind = line[7:]
        elif line.startswith(b"data: "):
            data = line[6:]
    return kind, data


class Stream:
    """One client's view of one job's stream."""

    __slots__ = ("events", "gaps", "index", "job_id", "open_s", "ready", "ready_type", "terminal")

    def __init__(self, job_id: str, ready_type: bytes) -> None:
        self.job_id = job_id
        self.ready_type = ready_type
        """The event after which the stream counts as open (the job's latest one)."""
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open_s = 0.0
        self.events = 0
        self.index = 0
        self.gaps = 0
        self.terminal = False


class Clients:
    def __init__(self, host: str, port: int, api_key: str) -> None:
        self.host, self.port = host, port
        self._request = (
            "GET /v1/jobs/{}/events HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        self._key = api_key
        self.streams: list[Stream] = []
        self.readers: dict[Stream, asyncio.Task[None]] = {}
        self.writers: list[asyncio.StreamWriter] = []
        self.latencies_us = array("q")
        self._reported = 0
        self.events = self.tokens = self.heartbeats = 0
        self.errors: Counter[str] = Counter()
        self.closing = False

    async def open(self, job_ids: list[str], ready_type: str, concurrency: int) -> dict[str, Any]:
        """Open a stream per job, at most ``concurrency`` at a time not yet past their
        ``ready_type`` event; once all are (or failed), how long that took."""
        gate = asyncio.Semaphore(concurrency)
        began = time.monotonic()

        async def one(job_id: str) -> Stream:
            async with gate:
                stream = Stream(job_id, ready_type.encode())
                t0 = time.monotonic()
                self.readers[stream] = asyncio.create_task(self._read(stream))
                await asyncio.wait(
                    {stream.ready, self.readers[stream]},
                    timeout=120,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stream.open_s = time.monotonic() - t0
                return stream

        streams = await asyncio.gather(*(one(j) for j in job_ids))
        self.streams += streams
        return {
            "open_ms": [s.open_s * 1000 for s in streams if s.ready.done()],
            "failed": sum(not s.ready.done() for s in streams),
            "seconds": time.monotonic() - began,
            "errors": dict(self.errors),
        }

    async def _read(self, stream: Stream) -> None:
        try:
            await self._consume(stream)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, StreamError) as e:
            self.errors[f"{type(e).__name__}: {e}"[:120]] += 1

    async def _consume(self, stream: Stream) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_BYTES)
        self.writers.append(writer)
        path = self._request.format(stream.job_id, self.host, self.port, self._key)
        writer.write(path.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise StreamError(f"http {status.decode()}")
        async for event in sse_events(reader):
            self._event(stream, event)
        if not stream.terminal and not self.closing:
            raise StreamError("closed before its terminal event")

    def _event(self, stream: Stream, event: bytes) -> None:
        if event.startswith(b":"):
            self.heartbeats += 1
            return
        kind, data = sse_fields(event)
        if not data:
            return  # the retry hint
        now_us = time.time_ns() // 1000
        fields = orjson.loads(data)
        stream.events += 1
        self.events += 1
        if kind == b"token":
            self.tokens += 1
            self.latencies_us.append(now_us - fields["ts"])
            stream.gaps += fields["index"] != stream.index + 1
            stream.index = fields["index"]
        elif kind in TERMINAL:
            stream.terminal = True
        if kind == stream.ready_type and not stream.ready.done():
            stream.ready.set_result(None)

    async def stats(self) -> dict[str, Any]:
        """Counts so far, and the latency of the tokens read since the last ``stats``."""
        recent = self.latencies_us[self._reported :]
        self._reported = len(self.latencies_us)
        return {
            "events": self.events,
            "tokens": self.tokens,
            "heartbeats": self.heartbeats,
            "open": sum(not t.done() for t in self.readers.values()),
            "errors": sum(self.errors.values()),
            "recent_us": recent.tobytes(),
        }

    async def wait_ended(self, ready_type: str, timeout: float) -> dict[str, Any]:
        """Wait for the streams opened with ``ready_type`` to end; their figures."""
        mine = [s for s in self.streams if s.ready_type == ready_type.encode()]
        if mine:
            await asyncio.wait([self.readers[s] for s in mine], timeout=timeout)
        return {
            "streams": len(mine),
            "ended": sum(s.terminal for s in mine),
            "gaps": sum(s.gaps for s in mine),
            "tokens": sum(s.index for s in mine),
            "latencies_us": self.latencies_us.tobytes(),
            "errors": dict(self.errors),
        }

    async def close(self) -> None:
        self.closing = True
        for writer in self.writers:
            writer.close()
        if self.readers:
            await asyncio.wait(self.readers.values(), timeout=10)


def summary(values: list[float]) -> dict[str, float]:
    """n, p50/p90/p99/max of ``values`` (empty if there are fewer than two)."""
    if len(values) < 2:
        return {}
    values = sorted(values)
    q = statistics.quantiles(values, n=1000, method="inclusive")
    return {
        "n": len(values),
        "p50": q[499],
        "p90": q[899],
        "p99": q[989],
        "p99.9": q[998],
        "max": values[-1],
    }


def latencies_ms(blobs: list[bytes]) -> list[float]:
    """Latencies in ms from the µs arrays the client processes sent."""
    out: list[float] = []
    for blob in blobs:
        us = array("q")
        us.frombytes(blob)
        out += (v / 1000 for v in us)
    return out


def run(conn: Connection, host: str, port: int, api_key: str) -> None:
    """The process: serve ``open``, ``stats``, ``wait_ended`` and ``close``."""
    use_uvloop()

    async def main() -> None:
        clients = Clients(host, port, api_key)
        await serve_commands(
            conn,
            {
                "open": clients.open,
                "stats": clients.stats,
                "wait_ended": clients.wait_ended,
                "close": clients.close,
            },
        )

    asyncio.run(main())
