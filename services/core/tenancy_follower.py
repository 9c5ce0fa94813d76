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
from services.core.errors import KafkaError
from services.core.kafka import KafkaClients, Record
from services.core.settings import Settings
from services.core.tenancy import KeyRing, SpendBook, TenantPolicies

log = logging.getLogger(__name__)

START_READ_S = 30.0
"""How long a process's start waits for the topics to be read (then goes on, not ready)."""
RETRY_S = 1.0


class TenancyFollower:
    def __init__(
        self,
        settings: Settings,
        clients: KafkaClients,
        tenants: TenantPolicies,
        keys: KeyRing,
        spend: SpendBook,
    ) -> None:
        t = settings.topics
        self._apply: dict[str, Callable[[Record], None]] = {
            t.tenants: self._tenant,
            t.keys: self._key,
            t.spend: self._spend,
        }
        self.tenants, self.keys, self.spend = tenants, keys, spend
        self.caught_up = asyncio.Event()
        self._consumer = clients.consumer(f"{t.prefix}-tenancy-{settings.worker_id}")
        self._task: asyncio.Task[None] | None = None

    def ready_reason(self) -> str | None:
        if self.caught_up.is_set():
            return None
        return "tenancy: reading the tenants, keys and spend topics"

    async def start(self) -> None:
        await self._consumer.start()
        ends: dict[str, int] = {}
        for topic in self._apply:
            _, ends[topic] = await self._consumer.watermarks(topic, 0)
        await self._consumer.assign([(topic, 0, 0) for topic in self._apply])
        self._task = asyncio.create_task(self._follow(ends), name="tenancy")
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

    async def _follow(self, ends: dict[str, int]) -> None:
        behind = {topic for topic, end in ends.items() if end > 0}
        if not behind:
            self._caught_up()
        while True:
            try:
                records = await self._consumer.poll(500, 0.1)
            except KafkaError as exc:
                log.warning("tenancy topics: %s; reading again in %.0fs", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            for rec in records:
                if rec.offset + 1 >= ends.get(rec.topic, 0):
                    behind.discard(rec.topic)
                self._apply[rec.topic](rec)
            if not behind and not self.caught_up.is_set():
                self._caught_up()

    def _caught_up(self) -> None:
        log.info(
            "tenancy read: %d tenant policies, %d run-time keys", len(self.tenants), len(self.keys)
        )
        self.caught_up.set()

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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.close()
