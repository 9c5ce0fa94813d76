"""Which events a stream sends: nothing twice, nothing at or before the client's cursor.

A consumer may read an event twice (a producer retry, an attempt replayed after
a crash). Events of one job are in order on one partition, so the highest event
sent — ``(attempt, seq)`` for a run, ``seq`` for the ``queued`` events of
attempt 0 — is all a stream needs to remember: anything at or below it is a
duplicate. The event at the client's cursor (``Last-Event-ID``) is one the client
has; it seeds that memory and is not sent again. A stream ends after a terminal
event.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.gateway.stream_item import StreamItem


class EventFilter:
    __slots__ = ("_queued", "_run", "after", "ended")

    def __init__(self, after: int | None = None) -> None:
        self.after = -1 if after is None else after
        """Offsets at or below this are the client's already."""
        self.ended = False
        self._queued = -1
        self._run = (0, -1)

    def seed(self, item: StreamItem) -> None:
        """Remember ``item`` as sent (the event at the client's cursor)."""
        self._fresh(item)
        self.ended = item.terminal

    def admit(self, items: Iterable[StreamItem]) -> list[StreamItem]:
        """The items to send, in order; none after a terminal one."""
        out: list[StreamItem] = []
        for item in items:
            if self.ended:
                break
            if item.offset <= self.after or not self._fresh(item):
                continue
            self.after = item.offset
            out.append(item)
            self.ended = item.terminal
        return out

    def _fresh(self, item: StreamItem) -> bool:
        """Whether ``item`` is newer than anything seen; if so, it is now the newest."""
        if item.attempt == 0:
            if item.seq <= self._queued:
                return False
            self._queued = item.seq
            return True
        ident = (item.attempt, item.seq)
        if ident <= self._run:
            return False
        self._run = ident
        return True
