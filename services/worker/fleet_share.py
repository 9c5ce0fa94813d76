"""A worker's share of the fleet's per-model budgets (``TOKENRELAY_MODEL_LIMITS``).

The limits are the provider's, for the whole fleet. Workers split the job
topics' partitions through their consumer group, and a job runs on the worker
that owns its partition; so a worker's fair share of a budget is its
partitions' part of the work waiting or running — per partition, the records
the group has not committed past (end offset - committed offset; a worker
commits a job's offset once the job has ended). Every worker reads the same
figures from the broker, so the shares add up to one, give or take what moved
between two refreshes, and N workers draw the limit once, not N times.

Each partition counts one more than its backlog, so an idle fleet splits the
budget by partitions owned, and a worker that just got work is never at zero.
Pure ``share``; ``FleetShare`` polls the broker every ``REFRESH_S``.

A tenant's concurrency cap (``max_concurrency``, fleet-wide) is split by
``local_cap``: by partitions owned, with no broker read. A tenant's jobs are
keyed by job id, so they spread over every partition, and a worker owning a
fraction f of the partitions sees about f of them; it runs at most
``ceil(cap * f)`` at once. What holds: on one worker the cap is exact; with N
workers between rebalances the fleet runs at most ``cap + N - 1`` of the
tenant's jobs (each worker rounds up, and gets at least one). What does not:
the cap can be under-used when the tenant's waiting jobs sit unevenly — few
jobs, or a priority whose partitions all went to one worker — since a worker
never borrows another's unused part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping

from services.core.errors import KafkaError
from services.core.kafka import Admin
from services.worker.rate_limit import RateLimiter

log = logging.getLogger(__name__)

REFRESH_S = 2.0
"""How often a worker recomputes its share."""
LOG_CHANGE = 0.05
"""A change of share logged (one line), when at least this much."""

Partition = tuple[str, int]


def share(owned: Collection[Partition], backlog: Mapping[Partition, int]) -> float:
    """The part of the fleet's budget for the worker that owns ``owned``: its partitions'
    part of ``backlog`` (every partition of the job topics → records not committed past),
    each partition counting one more than its backlog."""
    if not backlog:
        return 1.0
    total = sum(backlog.values()) + len(backlog)
    mine = sum(backlog[tp] + 1 for tp in owned if tp in backlog)
    return mine / total


def local_cap(cap: int, owned: int, total: int) -> int:
    """This worker's part of a fleet-wide cap: ``ceil(cap * owned / total)``,
    at least 1 while it owns any (and ``cap`` when ``total`` is unknown)."""
    if total <= 0:
        return cap
    return -(-cap * min(owned, total) // total)


class FleetShare:
    """Keeps ``limiter`` at this worker's share, from the group's backlog per partition."""

    def __init__(
        self,
        admin: Admin,
        group: str,
        topics: Mapping[str, int],
        owned: Callable[[], Collection[Partition]],
        limiter: RateLimiter,
    ) -> None:
        self._admin = admin
        self._group = group
        self._topics = dict(topics)
        self._owned = owned
        self._limiter = limiter
        self._logged = limiter.share
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Refresh now rather than at the next interval (the partitions owned changed)."""
        self._poked.set()

    async def refresh(self) -> float:
        """Read the backlog, set the limiter's share; returns it."""
        backlog = await self._admin.partition_lag(self._group, self._topics)
        owned = self._owned()
        new = share(owned, backlog)
        self._limiter.set_share(new)
        if abs(new - self._logged) >= LOG_CHANGE:
            log.info(
                "budget share %.2f -> %.2f (%d of %d partitions, %d of %d records waiting)",
                self._logged,
                new,
                len(owned),
                len(backlog),
                sum(backlog.get(tp, 0) for tp in owned),
                sum(backlog.values()),
            )
            self._logged = new
        return new

    async def run(self) -> None:
        """Refresh every ``REFRESH_S`` or when poked, until cancelled; a failed read keeps
        the last share."""
        while True:
            self._poked.clear()
            try:
                await self.refresh()
            except (KafkaError, TimeoutError) as exc:
                log.warning("budget share not refreshed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), REFRESH_S)
