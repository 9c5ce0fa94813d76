"""Token buckets: the worker's per-model budgets and the API's per-key limits share one rule.

A bucket refills continuously at its per-minute rate and holds at most one
minute's worth. Pure: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Bucket:
    """A continuous token bucket; ``level`` may go negative when usage beats the estimate."""

    per_minute: float
    level: float
    at: float

    @classmethod
    def full(cls, per_minute: float, now: float) -> Bucket:
        return cls(per_minute, per_minute, now)

    def _refill(self, now: float) -> None:
        self.level = min(self.per_minute, self.level + (now - self.at) * self.per_minute / 60)
        self.at = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (an amount above capacity waits for a full bucket)."""
        self._refill(now)
        need = min(amount, self.per_minute) - self.level
        return max(0.0, need * 60 / self.per_minute)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def set_rate(self, per_minute: float, now: float) -> None:
        """Change the rate from now on; what is left stays (within the new capacity)."""
        self._refill(now)
        self.per_minute = per_minute
        self.level = min(self.level, per_minute)

    def rescale(self, per_minute: float, now: float) -> None:
        """Change the rate; what is left (or owed) scales with it, so a bucket that was
        half full is half full at the new rate."""
        self._refill(now)
        self.level *= per_minute / self.per_minute
        self.per_minute = per_minute


def key_id(api_key: str) -> str:
    """A short, stable name for an API key that does not reveal it (for limits and logs)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class KeyLimits:
    """One bucket per caller: ``admit`` takes a request or says how long to wait.

    The least recently seen callers are forgotten past ``max_callers`` (a
    forgotten caller starts again with a full bucket).
    """

    def __init__(self, per_minute: float, max_callers: int = 10_000) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._max = max_callers

    def admit(self, caller: str, now: float) -> int | None:
        """None when the request may run (and it is counted); else whole seconds to wait."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = Bucket.full(self.per_minute, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(caller)
        wait = bucket.wait_s(1, now)
        if wait > 0:
            return max(1, math.ceil(wait))
        bucket.take(1, now)
        return None
