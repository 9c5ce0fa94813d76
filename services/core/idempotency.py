"""Remembers ``Idempotency-Key`` answers so a retried submission gets the first job back.

In-process and bounded (LRU with a time-to-live). Concurrent requests with the
same key share one submission. A key stands for one request: the same key with
another body is a 409 (``idempotency_key_reused``), never the first job's answer
to a different question.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Any

from schemas.jobs import JobRequest
from services.core.errors import ApiError
from services.core.serde import encode


def fingerprint(req: JobRequest) -> bytes:
    """What a key is bound to: the request as validated (so ``1`` and ``1.0`` are the same)."""
    return hashlib.sha256(encode(req)).digest()


class IdempotencyCache:
    def __init__(self, max_entries: int = 100_000, ttl_s: float = 24 * 3600) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes, asyncio.Future[Any]]] = (
            OrderedDict()
        )
        self._max = max_entries
        self._ttl = ttl_s

    def claim(self, tenant: str, key: str, request: bytes) -> tuple[asyncio.Future[Any], bool]:
        """The future holding the answer for (tenant, key), and whether this caller owns it.

        ``request`` is the request's ``fingerprint``; another request under a key in use
        is a 409 ``ApiError``.
        """
        now = time.monotonic()
        entry = self._entries.get((tenant, key))
        if entry is not None and now - entry[0] < self._ttl:
            if entry[1] != request:
                raise ApiError(
                    409,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for another request; use a new key",
                    "Idempotency-Key",
                )
            self._entries.move_to_end((tenant, key))
            return entry[2], False
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._entries[(tenant, key)] = (now, request, fut)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return fut, True

    def release(self, tenant: str, key: str) -> None:
        """Forget a key whose submission failed, so that a retry submits afresh."""
        self._entries.pop((tenant, key), None)


IDEMPOTENCY_KEY_MAX = 200
"""The longest ``Idempotency-Key`` taken, in characters."""


def idempotency_key(headers: Any) -> str | None:
    """The request's ``Idempotency-Key``, or a 422 when it is longer than we keep."""
    key: str | None = headers.get("idempotency-key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApiError(
            422,
            "invalid_request",
            f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
            "Idempotency-Key",
        )
    return key
