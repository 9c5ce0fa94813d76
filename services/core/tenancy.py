"""Tenants' policies and run-time API keys as every process holds them: plain, no Kafka here.

``tenancy_follower.py`` fills a ``TenantPolicies`` and a ``KeyRing`` from the
compacted topics ``tokenrelay.tenants`` and ``tokenrelay.keys``; the parts read
them (the worker a tenant's weight and concurrency cap, ingest its quotas, the
API keys). A tenant nobody set has the default policy: weight 1, no limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.tenants import ApiKeyRecord, TenantLimits, TenantPolicy, TenantSpend

KEY_PREFIX = "trk_"
"""Run-time keys look like ``trk_<id>_<secret>``: the id names the key in lists and logs."""

DEFAULT_LIMITS = TenantLimits()


def key_digest(key: str) -> str:
    """What ``tokenrelay.keys`` stores of a key: its SHA-256, hex. A key has 192 random
    bits, so a plain hash is as hard to reverse as the key is to guess."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its id."""
    key_id = secrets.token_hex(8)
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}", key_id


class Followed:
    """Something a follower updates, which a coroutine can wait on."""

    def __init__(self) -> None:
        self._updated = asyncio.Event()

    def _notify(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds, checked after each update (no deadline of its own)."""
        while not done():
            await self._updated.wait()


class TenantPolicies(Followed):
    """Each tenant's latest policy; ``on_change`` listeners run after every update."""

    def __init__(self) -> None:
        super().__init__()
        self._by_tenant: dict[str, TenantPolicy] = {}
        self._listeners: list[Callable[[str], None]] = []

    def __len__(self) -> int:
        return len(self._by_tenant)

    def __iter__(self) -> Iterator[TenantPolicy]:
        return iter(sorted(self._by_tenant.values(), key=lambda p: p.tenant))

    def limits(self, tenant: str) -> TenantLimits:
        policy = self._by_tenant.get(tenant)
        return DEFAULT_LIMITS if policy is None else policy

    def policy(self, tenant: str) -> TenantPolicy | None:
        return self._by_tenant.get(tenant)

    def weight(self, tenant: str) -> float:
        return self.limits(tenant).weight

    def max_concurrency(self, tenant: str) -> int | None:
        return self.limits(tenant).max_concurrency

    def put(self, policy: TenantPolicy) -> None:
        self._by_tenant[policy.tenant] = policy
        self._changed(policy.tenant)

    def remove(self, tenant: str) -> None:
        if self._by_tenant.pop(tenant, None) is not None:
            self._changed(tenant)

    def _changed(self, tenant: str) -> None:
        for listener in self._listeners:
            listener(tenant)
        self._notify()

    def on_change(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)


class KeyRing(Followed):
    """The run-time API keys, by the SHA-256 of the key (a lookup) and by id (a list)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_digest: dict[str, ApiKeyRecord] = {}
        self._by_id: dict[str, ApiKeyRecord] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, key: str) -> ApiKeyRecord | None:
        if not key.startswith(KEY_PREFIX):
            return None
        return self._by_digest.get(key_digest(key))

    def put(self, record: ApiKeyRecord) -> None:
        self.revoke(record.id)
        self._by_id[record.id] = record
        self._by_digest[record.sha256] = record
        self._notify()

    def revoke(self, key_id: str) -> ApiKeyRecord | None:
        old = self._by_id.pop(key_id, None)
        if old is not None:
            self._by_digest.pop(old.sha256, None)
            self._notify()
        return old

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._by_id.get(key_id)

    def records(self) -> list[ApiKeyRecord]:
        return sorted(self._by_id.values(), key=lambda r: (r.created_at, r.id))


@dataclass(frozen=True, slots=True)
class Spent:
    """A tenant's spend as of the last ClickHouse read: this UTC day and this month."""

    usd_day: float = 0.0
    tokens_day: int = 0
    usd_month: float = 0.0
    as_of: int = 0


def utc_day(ts_us: int) -> tuple[str, str]:
    """``("2026-12-06", "2026-12")`` for a time in microseconds."""
    day = datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%d")
    return day, day[:7]


class SpendBook:
    """What each tenant has spent, from ``tokenrelay.spend``; a figure of another day
    (or month) than the one asked about counts as nothing spent yet."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, TenantSpend] = {}

    def put(self, spend: TenantSpend) -> None:
        old = self._by_tenant.get(spend.tenant)
        if old is None or (old.day, old.as_of) <= (spend.day, spend.as_of):
            self._by_tenant[spend.tenant] = spend

    def spent(self, tenant: str, now_us: int) -> Spent:
        found = self._by_tenant.get(tenant)
        if found is None:
            return Spent()
        day, month = utc_day(now_us)
        if found.day == day:
            return Spent(found.usd_day, found.tokens_day, found.usd_month, found.as_of)
        if found.day[:7] == month:
            return Spent(usd_month=found.usd_month, as_of=found.as_of)
        return Spent()
