"""Which events a stream sends: nothing twice, nothing at or before the client's cursor.

A consumer may read an event twice (a producer retry, an attempt replayed after
a crash). Events of one job are in order on one partition, so the highest event
sent is all a stream needs to remember: anything at or below it is a duplicate
(the protocol's rule, ``schemas.rules.already_seen``, as the aggregator applies
it). The event at the client's cursor (``Last-Event-ID``) is one the client has;
it seeds that memory and is not sent again. A stream ends after a terminal event.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.rules import NO_RUN_SEEN, NONE_SEEN, SUBMISSION_ATTEMPT, already_seen
from services.gateway.stream_item import StreamItem


class EventFilter:
    __slots__ = ("_queued", "_run", "after", "ended")

    def __init__(self, after: int | None = None) -> None:
        self.after = -1 if after is None else after
        """Offsets at or below this are the client's already."""
        self.ended = False
        self._queued = NONE_SEEN
        self._run = NO_RUN_SEEN

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
        if already_seen(item.attempt, item.seq, submission=self._queued, run=self._run):
            return False
        if item.attempt == SUBMISSION_ATTEMPT:
            self._queued = item.seq
        else:
            self._run = (item.attempt, item.seq)
        return True
