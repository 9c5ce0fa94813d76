"""Writing a stream to one client, SSE or websocket, and cutting it off when it stalls.

A write to a client that stopped reading blocks (the server waits for its socket
to drain), so the write runs in its own task next to two watchers: the client
going away, and the stream's ``cut`` future, which the fan-out resolves when the
stream's buffer overflows. Whichever comes first decides the ``Outcome``; a cut
aborts the blocked write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from enum import StrEnum

from services.core.errors import TokenrelayError
from services.gateway.stream_item import StreamItem
from services.gateway.watch import SlowClientError

log = logging.getLogger(__name__)

Write = Callable[[list[StreamItem]], Awaitable[None]]


class ClientGoneError(TokenrelayError):
    """A write found the connection closed (the client left between two writes)."""


class AnswerEndedError(TokenrelayError):
    """A write said the answer's last word before the job's end (an OpenAI stream's error)."""


class Outcome(StrEnum):
    ENDED = "ended"
    """The job's terminal event was sent, or the gateway is stopping."""
    GONE = "gone"
    """The client went away."""
    CUT = "cut"
    """The client stopped reading and its buffer filled."""
    FAILED = "failed"
    """Reading the job's events failed (the broker is away); the client may resume."""


async def deliver(
    batches: AsyncGenerator[list[StreamItem], None],
    write: Write,
    disconnected: Awaitable[None],
    cut: asyncio.Future[None],
) -> Outcome:
    """Write every batch until the stream ends, the client leaves, or it is cut off."""

    async def run() -> None:
        async with aclosing(batches) as stream:
            async for batch in stream:
                await write(batch)

    writer = asyncio.create_task(run())
    gone = asyncio.ensure_future(disconnected)
    try:
        await asyncio.wait({writer, gone, cut}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, writer):
            if not task.done():
                task.cancel()
        await asyncio.gather(gone, writer, return_exceptions=True)
    if writer.done() and not writer.cancelled():
        exc = writer.exception()
        if exc is None or isinstance(exc, AnswerEndedError):
            return Outcome.ENDED
        if isinstance(exc, SlowClientError):
            return Outcome.CUT
        if isinstance(exc, ClientGoneError):
            return Outcome.GONE
        log.warning("stream failed: %s", exc, exc_info=exc)
        return Outcome.FAILED
    return Outcome.CUT if cut.done() else Outcome.GONE


_left_incomplete: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tokenrelay_stream_left_incomplete", default=False
)
INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."


def leave_incomplete() -> None:
    """Mark this request's response as deliberately left unfinished (see ``QuietCutOffs``)."""
    _left_incomplete.set(True)


class QuietCutOffs(logging.Filter):
    """Drops uvicorn's error for a response we left unfinished on purpose.

    Ending a cut-off stream without its final chunk is how the client learns the
    stream broke (it then resumes with its last id); uvicorn closes the connection
    and would log it as an application error. The flag lives in the request's
    context, which uvicorn's log call shares.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == INCOMPLETE_RESPONSE and _left_incomplete.get())


def install_quiet_cut_offs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietCutOffs) for f in logger.filters):
        logger.addFilter(QuietCutOffs())
