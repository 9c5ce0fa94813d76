"""Server-sent events framing (pure functions)."""

from __future__ import annotations

HEARTBEAT = b": keep-alive\n\n"
RETRY_MS = 2000


def frame(event_id: int | str, event: str, data: bytes) -> bytes:
    """One SSE event. ``data`` is single-line JSON, so it fits one ``data:`` line."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (str(event_id).encode(), event.encode(), data)


def retry_hint(ms: int = RETRY_MS) -> bytes:
    return b"retry: %d\n\n" % ms


def parse_last_event_id(value: str | None) -> int | None:
    """The Kafka offset in ``Last-Event-ID``; ``ValueError`` if it is not a non-negative integer."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise ValueError("Last-Event-ID must be the id of an event this stream sent")
    return int(value)
