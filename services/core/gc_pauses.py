"""Keep the garbage collector's stops short, and show them: a histogram, a line per long one.

A collection runs on the event loop's thread and holds every stream and request
while it walks the objects of its generations. In a gateway taking 10,000 streams
each full collection walked every object of every open stream, found nothing to
collect, and grew with them: 21 full collections of 129-777 ms while the streams
opened (``bench fanout --idle 10000``), and one in the middle of the live load
was enough to put the token latency's p99 at 716 ms.

So what survives a full collection is frozen out of the next ones (``gc.freeze``):
each full collection then walks only what became long-lived since the last. A
frozen object is still freed when its last reference goes; only a reference cycle
that includes one is not collected while frozen. So every ``THAW_EVERY_S`` the
frozen objects are put back (``gc.unfreeze``) and the next full collection walks
them all once and collects those cycles, before they are frozen again.

``tokenrelay_gc_pause_seconds{generation}`` on ``/metrics`` has every stop, and
each of ``LONG_PAUSE_S`` or more is logged.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger(__name__)

LONG_PAUSE_S = 0.1
"""A pause at least this long is logged."""

GC_PAUSE_SECONDS = Histogram(
    "tokenrelay_gc_pause_seconds",
    "Time the garbage collector stopped the process, by generation collected",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


THAW_EVERY_S = 600.0
"""How often the frozen survivors go back into the next full collection."""

OLDEST = 2
"""The generation of a full collection."""


class PauseWatch:
    """A ``gc.callbacks`` entry timing each collection and freezing what survives a full one."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        self._clock = clock
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._started = 0.0
        self._thawed = clock()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        now = self._clock()
        paused = now - self._started
        generation = info.get("generation", 0)
        GC_PAUSE_SECONDS.labels(str(generation)).observe(paused)
        if paused >= LONG_PAUSE_S:
            log.warning(
                "garbage collection of generation %d held the process %.0f ms (%d collected)",
                generation,
                paused * 1000,
                info.get("collected", 0),
            )
        if generation == OLDEST:
            self._after_full(now)

    def _after_full(self, now: float) -> None:
        """Freeze the survivors; or, once per ``THAW_EVERY_S``, put every frozen object
        back so that the next full collection walks them all."""
        if now - self._thawed >= THAW_EVERY_S:
            self._thawed = now
            self._unfreeze()
        else:
            self._freeze()


_watch = PauseWatch()


def watch_collections() -> None:
    """Time every collection from now on and freeze what survives a full one (once per
    process, however often called)."""
    if _watch not in gc.callbacks:
        gc.callbacks.append(_watch)
