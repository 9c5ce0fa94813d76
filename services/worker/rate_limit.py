"""Per-model budgets of requests and tokens per minute, so a worker waits instead of drawing 429s.

Each budget is a token bucket (``services.core.rate``) that refills
continuously at its per-minute rate and holds at most one minute's worth. A job
reserves one request and its estimated tokens (prompt plus ``max_tokens``)
before it calls the provider;
when it ends, the estimate is corrected by the usage the provider reported.
The limits are per worker process: divide a provider's limit by the number of
worker processes when configuring them.
"""

from __future__ import annotations

import asyncio
import time

from services.core.limits import ModelLimit
from services.core.rate import Bucket


class RateLimiter:
    def __init__(self, limits: dict[str, ModelLimit]) -> None:
        self._limits = limits
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._lock = asyncio.Lock()

    def _bucket(self, model: str, kind: str, per_minute: float, now: float) -> Bucket:
        key = (model, kind)
        if key not in self._buckets:
            self._buckets[key] = Bucket.full(per_minute, now)
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
                await asyncio.sleep(wait)
                waited += wait

    def settle(self, model: str, estimated: int, actual: int) -> None:
        """Correct a reservation by what the job really used."""
        now = time.monotonic()
        for b, kind in self._buckets_for(model, now):
            if kind == "tpm":
                b.take(actual - estimated, now)
