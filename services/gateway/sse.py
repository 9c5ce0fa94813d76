"""Wire framing of stream events (pure functions): SSE text and websocket messages."""

from __future__ import annotations

import re

HEARTBEAT = b": keep-alive\n\n"
RETRY_MS = 2000


def frame(event_id: int | str, event: str, data: bytes) -> bytes:
    """One SSE event. ``data`` is single-line JSON, so it fits one ``data:`` line."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (str(event_id).encode(), event.encode(), data)


def ws_message(event_id: int, event: str, data: bytes) -> bytes:
    """One websocket text message: ``{"id", "event", "data"}``, the SSE fields as JSON.

    ``id`` is a string, as in SSE, and is what ``last_event_id`` takes to resume.
    """
    return b'{"id":"%d","event":"%s","data":%s}' % (event_id, event.encode(), data)


def retry_hint(ms: int = RETRY_MS) -> bytes:
    return b"retry: %d\n\n" % ms


LAST_EVENT_ID_PATTERN = r"^[0-9]{1,19}$"
LAST_EVENT_ID = re.compile(LAST_EVENT_ID_PATTERN)
MAX_OFFSET = 2**63 - 1
"""Kafka offsets are signed 64-bit integers."""


def parse_last_event_id(value: str | None) -> int | None:
    """The Kafka offset in ``Last-Event-ID``; ``ValueError`` if it is not a non-negative integer."""
    if value is None or value == "":
        return None
    if not LAST_EVENT_ID.match(value) or int(value) > MAX_OFFSET:
        raise ValueError("Last-Event-ID must be the id of an event this stream sent")
    return int(value)
