"""Every process follows ``tokenrelay.tenants``, ``tokenrelay.keys`` and ``tokenrelay.spend``.

The three topics are compacted and small (a record per tenant, per key, per
tenant's spend), so each process reads them whole at its start, outside any
group, and then live (the process's other parts start once they are read, or
after ``START_READ_S``): a policy set or a key made or revoked through the admin
API holds on every process within a poll (~100 ms) of reaching the broker. The
process is not ready until it has read each topic up to the end it found at start,
so a revoked key is never honoured by a process that has not read the revocation.

A record that cannot be read is logged and skipped: a policy or key it would
have set stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import ValidationError

from schemas.tenants import ApiKeyRecord, TenantPolicy, TenantSpend
from services.core.breakdown import Breakdown
from services.core.kafka import KafkaClients, Record
from services.core.kafka.follower import PartitionFollower
from services.core.settings import Settings
from services.core.tenancy import KeyRing, SpendBook, TenantPolicies

log = logging.getLogger(__name__)

START_READ_S = 30.0
"""How long a process's start waits for the topics to be read (then goes on, not ready)."""


class TenancyFollower:
    def __init__(
        self,
        settings: Settings,
        clients: KafkaClients,
        tenants: TenantPolicies,
        keys: KeyRing,
        spend: SpendBook,
        breakdown: Breakdown,
    ) -> None:
        t = settings.topics
        self._breakdown = breakdown
        self._apply: dict[str, Callable[[Record], None]] = {
            t.tenants: self._tenant,
            t.keys: self._key,
            t.spend: self._spend,
        }
        self.tenants, self.keys, self.spend = tenants, keys, spend
        self._follower = PartitionFollower(
            clients,
            f"{t.prefix}-tenancy-{settings.worker_id}",
            "tenancy topics",
            lambda rec: self._apply[rec.topic](rec),
            self._caught_up,
        )
        self.caught_up = self._follower.caught_up

    def ready_reason(self) -> str | None:
        if self.caught_up.is_set():
            return None
        return "tenancy: reading the tenants, keys and spend topics"

    async def start(self) -> None:
        await self._follower.start(((topic, 0) for topic in self._apply), self._breakdown)
        # The parts start after this one: a worker would otherwise start its first jobs
        # with no caps or budgets, and ingest admit with no quotas, until the topics are read.
        try:
            async with asyncio.timeout(START_READ_S):
                await self.caught_up.wait()
        except TimeoutError:
            log.warning(
                "tenancy topics not read in %.0fs: starting without them (not ready)",
                START_READ_S,
            )

    def _caught_up(self) -> None:
        log.info(
            "tenancy read: %d tenant policies, %d run-time keys", len(self.tenants), len(self.keys)
        )

    def _tenant(self, rec: Record) -> None:
        name = (rec.key or b"").decode(errors="replace")
        if rec.value is None:
            self.tenants.remove(name)
            return
        try:
            policy = TenantPolicy.model_validate_json(rec.value)
        except ValidationError as exc:
            log.error("unreadable tenant policy at %s: %s", rec.where(), exc)
            return
        self.tenants.put(policy)
        if self.caught_up.is_set():
            log.info("tenant %s policy set by %s", policy.tenant, policy.by)

    def _key(self, rec: Record) -> None:
        key_id = (rec.key or b"").decode(errors="replace")
        if rec.value is None:
            if self.keys.revoke(key_id) is not None and self.caught_up.is_set():
                log.info("api key %s revoked", key_id)
            return
        try:
            record = ApiKeyRecord.model_validate_json(rec.value)
        except ValidationError as exc:
            log.error("unreadable api key record at %s: %s", rec.where(), exc)
            return
        self.keys.put(record)
        if self.caught_up.is_set():
            log.info("api key %s made for %s (%s)", record.id, record.tenant, record.role)

    def _spend(self, rec: Record) -> None:
        if rec.value is None:
            return
        try:
            self.spend.put(TenantSpend.model_validate_json(rec.value))
        except ValidationError as exc:
            log.error("unreadable spend record at %s: %s", rec.where(), exc)

    async def stop(self) -> None:
        await self._follower.stop()
