"""Writing a stream to one client, SSE or websocket, and cutting it off when it stalls.

A write to a client that stopped reading blocks (the server waits for its socket
to drain). Two things end a stream from outside its writes: the client going
away (a task watches for it) and the stream's ``cut`` future, which the fan-out
resolves when the stream's buffer overflows. Either cancels the stream's task
where it waits, a blocked write included; the first one decides the ``Outcome``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from enum import StrEnum
from typing import Any

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
    """Write every batch until the stream ends, the client leaves, or it is cut off.

    The writes run in the caller's task; the client going away or ``cut`` cancels it
    wherever it waits (for the next batch or in a blocked write). The watcher of
    ``disconnected`` is the one task a stream adds: a writer task of its own, with
    ``asyncio.wait`` and its futures, cost an idle stream about 1.5 KB more.
    """
    me = asyncio.current_task()
    assert me is not None
    gone = asyncio.ensure_future(disconnected)
    interrupt = _Interrupt(me)
    gone.add_done_callback(interrupt)
    cut.add_done_callback(interrupt)
    try:
        async with aclosing(batches) as stream:
            async for batch in stream:
                await write(batch)
                del batch  # an idle stream keeps no batch it sent
    except asyncio.CancelledError:
        if not interrupt.fired or me.uncancel() > 0:
            raise  # not ours: the server cancels the request
        return Outcome.CUT if cut.done() else Outcome.GONE
    except AnswerEndedError:
        return Outcome.ENDED
    except SlowClientError:
        return Outcome.CUT
    except ClientGoneError:
        return Outcome.GONE
    except Exception as exc:
        log.warning("stream failed: %s", exc, exc_info=exc)
        return Outcome.FAILED
    finally:
        interrupt.armed = False
        cut.remove_done_callback(interrupt)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
    return Outcome.ENDED


class _Interrupt:
    """Cancels the stream's task once, when the client leaves or the stream is cut off."""

    __slots__ = ("armed", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.armed = True
        self.fired = False

    def __call__(self, _: asyncio.Future[Any]) -> None:
        if self.armed and not self.fired:
            self.fired = True
            self.task.cancel()


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
