"""Per-model budgets of requests and tokens per minute, so the fleet waits instead of drawing 429s.

Each budget is a token bucket (``services.core.rate``) that refills
continuously at its per-minute rate and holds at most one minute's worth. A job
reserves one request and its estimated tokens (prompt plus ``max_tokens``)
before it calls the provider; when it ends, the estimate is corrected by the
usage the provider reported.

``TOKENRELAY_MODEL_LIMITS`` are the provider's limits for the whole fleet: a
worker's buckets run at its ``share`` of them (``fleet_share``: its partitions'
part of the work), so N workers draw the limit once, not N times.
"""

from __future__ import annotations

import asyncio
import time

from services.core.limits import ModelLimit
from services.core.rate import Bucket

MIN_SHARE = 1e-3
"""The smallest share a bucket runs at (a worker that owns no work yet still has a rate)."""


class RateLimiter:
    def __init__(self, limits: dict[str, ModelLimit], share: float | None = 1.0) -> None:
        """``share`` None: wait for the first ``set_share`` before any budgeted call (so a
        worker joining a fleet never starts with the whole fleet's burst)."""
        self._limits = limits
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._lock = asyncio.Lock()
        self._shared = asyncio.Event()
        self.share = MIN_SHARE
        if share is not None:
            self.share = max(MIN_SHARE, share)
            self._shared.set()

    @property
    def limited(self) -> bool:
        """Whether any model has a budget."""
        return any(self._budgeted(model) for model in self._limits)

    def _budgeted(self, model: str) -> bool:
        """Whether ``model`` has a budget (a limit of 0 is none)."""
        limit = self._limits.get(model)
        return limit is not None and bool(limit.rpm or limit.tpm)

    def set_share(self, share: float) -> None:
        """Run every budget at ``share`` of its fleet-wide rate from now on.

        A smaller share shrinks what is left with the rate; a larger one raises the rate
        only. Shares move as work moves between workers (one's backlog drains, another's
        grows); were the growing worker's unspent budget scaled up too, the fleet would
        gain requests it never had while the shrinking worker, having spent its own,
        lost nothing.
        """
        share = max(MIN_SHARE, min(1.0, share))
        self._shared.set()
        if share == self.share:
            return
        now = time.monotonic()
        for bucket in self._buckets.values():
            rate = bucket.per_minute * share / self.share
            if share < self.share:
                bucket.rescale(rate, now)
            else:
                bucket.set_rate(rate, now)
        self.share = share

    def _bucket(self, model: str, kind: str, per_minute: float, now: float) -> Bucket:
        key = (model, kind)
        if key not in self._buckets:
            self._buckets[key] = Bucket.full(per_minute * self.share, now)
        return self._buckets[key]

    def _buckets_for(self, model: str, now: float) -> list[tuple[Bucket, str]]:
        limit = self._limits.get(model)
        if limit is None:
            return []
        out = []
        if limit.rpm:
            out.append((self._bucket(model, "rpm", limit.rpm, now), "rpm"))
        if limit.tpm:
            out.append((self._bucket(model, "tpm", limit.tpm, now), "tpm"))
        return out

    async def acquire(self, model: str, tokens: int) -> float:
        """Wait until one request and ``tokens`` fit the model's budget; returns seconds waited."""
        waited = 0.0
        if not self._shared.is_set() and self._budgeted(model):
            started = time.monotonic()
            await self._shared.wait()
            waited = time.monotonic() - started
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                buckets = self._buckets_for(model, now)
                wait = max(
                    (b.wait_s(1 if kind == "rpm" else tokens, now) for b, kind in buckets),
                    default=0.0,
                )
                if wait <= 0:
                    for b, kind in buckets:
                        b.take(1 if kind == "rpm" else tokens, now)
                    return waited
                # Wake at least every second: a new share may shorten the wait.
                await asyncio.sleep(min(wait, 1.0))
                waited += min(wait, 1.0)

    def settle(self, model: str, estimated: int, actual: int) -> None:
        """Correct a reservation by what the job really used."""
        now = time.monotonic()
        for b, kind in self._buckets_for(model, now):
            if kind == "tpm":
                b.take(actual - estimated, now)
