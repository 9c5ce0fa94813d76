"""When and from where a broken stream is opened again: pure, shared by both clients.

A stream resumes after its last event's id (``Last-Event-ID``: a Kafka offset,
so nothing is missed or repeated, whichever gateway answers). Between tries it
waits 0.2 s, doubling to 5 s; progress resets the wait. It gives up when no
event arrived for ``give_up_s`` (``StreamGaveUpError``), or at once on an
answer that a retry cannot change (401, 404, 409, 422).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tokenrelay_client.errors import StreamGaveUpError, TokenrelayError

RETRYABLE = frozenset({500, 502, 503, 504})
FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0


@dataclass
class Resume:
    cursor: str | None
    give_up_s: float
    _pause: float = FIRST_PAUSE_S
    _since: float = field(default_factory=time.monotonic)

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.cursor} if self.cursor is not None else {}

    def progressed(self, event_id: str | None) -> None:
        if event_id is not None:
            self.cursor = event_id
        self._pause = FIRST_PAUSE_S
        self._since = time.monotonic()

    def failed(self, why: Exception) -> float:
        """How long to wait before the next try; raises if the stream should not be retried."""
        if isinstance(why, TokenrelayError) and why.status not in RETRYABLE:
            raise why
        quiet = time.monotonic() - self._since
        if quiet > self.give_up_s:
            raise StreamGaveUpError(
                0, "stream_gave_up", f"no event for {quiet:.0f}s; last error: {why}"
            ) from why
        pause, self._pause = self._pause, min(self._pause * 2, MAX_PAUSE_S)
        return pause
