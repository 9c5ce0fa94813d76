"""Which tokens of an attempt also go to ``tokenrelay.lifecycle``: the progress ticks.

The first token (the job's time to first token and its switch to "streaming"),
then at most one per ``tick_s`` by the events' own time: enough for a job's state
and its batch's progress to move while it runs, and a count of lifecycle records
per job that does not grow with its tokens. The terminal event carries the exact
count at the end.
"""

from __future__ import annotations

from schemas.events import Token


class ProgressTicks:
    def __init__(self, tick_s: float) -> None:
        self._tick_us = int(tick_s * 1e6)
        self._last_us: int | None = None

    def due(self, token: Token) -> bool:
        """Whether ``token`` is a tick; if so, the next one is ``tick_s`` after it."""
        if self._last_us is not None and token.ts - self._last_us < self._tick_us:
            return False
        self._last_us = token.ts
        return True
