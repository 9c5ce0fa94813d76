"""Remembers ``Idempotency-Key`` answers so a retried submission gets the first job back.

In-process and bounded (LRU with a time-to-live). Concurrent requests with the
same key share one submission.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any


class IdempotencyCache:
    def __init__(self, max_entries: int = 100_000, ttl_s: float = 24 * 3600) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[Any]]] = (
            OrderedDict()
        )
        self._max = max_entries
        self._ttl = ttl_s

    def claim(self, tenant: str, key: str) -> tuple[asyncio.Future[Any], bool]:
        """The future holding the answer for (tenant, key), and whether this caller owns it."""
        now = time.monotonic()
        entry = self._entries.get((tenant, key))
        if entry is not None and now - entry[0] < self._ttl:
            self._entries.move_to_end((tenant, key))
            return entry[1], False
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._entries[(tenant, key)] = (now, fut)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return fut, True

    def release(self, tenant: str, key: str) -> None:
        """Forget a key whose submission failed, so that a retry submits afresh."""
        self._entries.pop((tenant, key), None)
