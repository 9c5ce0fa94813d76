"""Tenants and API keys at run time: the admin API, and a tenant's usage against its limits.

``PUT /v1/admin/tenants/{tenant}`` sets a tenant's policy (weight, concurrency
cap, quotas, budgets), ``GET /v1/admin/tenants`` lists them; ``POST
/v1/admin/keys`` makes a key (answered once, stored as its SHA-256), ``GET
/v1/admin/keys`` lists them, ``DELETE /v1/admin/keys/{id}`` revokes one. Each
change is a record on a compacted topic that every process follows
(``tenancy_follower.py``); the answer waits until this process has read it back,
so a read on the same process right after sees it, and every other process does
within about a second. ``GET /v1/tenants/{tenant}/usage`` shows spend against
limits (a user: its own tenant only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, Path, Response

from schemas.tenants import (
    TENANT_PATTERN,
    ApiKeyRecord,
    KeyInfo,
    KeyList,
    MadeKey,
    NewKey,
    TenantLimits,
    TenantList,
    TenantPolicy,
    TenantUsage,
)
from services.core.access import Caller
from services.core.auth import Principal
from services.core.errors import ApiError, KafkaError
from services.core.http import JsonResponse, StrictJsonRoute, kafka_unavailable
from services.core.ids import now_us
from services.core.openapi import error_responses
from services.core.quotas import usage
from services.core.runtime import Runtime
from services.core.serde import encode
from services.core.tenancy import Followed, key_digest, new_key

log = logging.getLogger(__name__)

READ_BACK_S = 5.0
"""How long a change's answer waits for this process to read the change back."""

TenantName = Path(pattern=TENANT_PATTERN, description="The tenant, as its API keys name it.")
KeyId = Path(pattern=r"^[a-f0-9]{16}$", description="The key's id, as it was made.")
Done = Callable[[], bool]


def key_info(record: ApiKeyRecord) -> dict[str, object]:
    return KeyInfo.model_validate(record.model_dump()).model_dump()


class _Changes:
    """Stores a change on its topic, then waits until this process has read it back."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def store(
        self, topic: str, key: str, value: bytes | None, followed: Followed, done: Done
    ) -> None:
        rt = self.rt
        if rt.kafka.unreachable:
            raise kafka_unavailable(f"the change to {key} was not stored: Kafka is unreachable")
        try:
            async with asyncio.timeout(rt.settings.submit_timeout_s):
                await rt.producer.send(topic, key, value)
            async with asyncio.timeout(READ_BACK_S):
                await followed.wait_until(done)
        except (TimeoutError, KafkaError) as exc:
            raise kafka_unavailable(
                f"the change to {key} may not have been stored (no answer in time); read it "
                "back, or retry"
            ) from exc


def _newer_or_same(rt: Runtime, tenant: str, policy: TenantPolicy) -> bool:
    """This process has read ``policy``, or a later one (another admin's, which wins)."""
    seen = rt.tenants.policy(tenant)
    return seen is not None and seen.updated_at >= policy.updated_at


def make_tenant_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)

    async def admin(who: Principal = Depends(rt.access.caller)) -> Principal:  # noqa: B008
        if not who.is_admin:
            raise ApiError(403, "forbidden", "managing tenants and keys needs an admin key")
        return who

    changes = _Changes(rt)
    _add_tenant_routes(router, rt, admin, changes)
    _add_key_routes(router, rt, admin, changes)
    _add_usage_route(router, rt)
    return router


def _add_tenant_routes(router: APIRouter, rt: Runtime, admin: Caller, changes: _Changes) -> None:
    topic = rt.settings.topics.tenants

    @router.put(
        "/admin/tenants/{tenant}",
        response_model=TenantPolicy,
        responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    )
    async def set_tenant(
        limits: TenantLimits,
        tenant: str = TenantName,
        who: Principal = Depends(admin),  # noqa: B008
    ) -> JsonResponse:
        policy = TenantPolicy(
            tenant=tenant, updated_at=now_us(), by=who.tenant, **limits.model_dump()
        )
        await changes.store(
            topic, tenant, encode(policy), rt.tenants, lambda: _newer_or_same(rt, tenant, policy)
        )
        log.info("tenant %s policy set by %s: %s", tenant, who.tenant, limits.model_dump_json())
        return JsonResponse(policy.model_dump(by_alias=True))

    @router.get("/admin/tenants", response_model=TenantList, responses=error_responses(401, 403))
    async def list_tenants(_who: Principal = Depends(admin)) -> JsonResponse:  # noqa: B008
        return JsonResponse({"tenants": [p.model_dump(by_alias=True) for p in rt.tenants]})


def _add_key_routes(router: APIRouter, rt: Runtime, admin: Caller, changes: _Changes) -> None:
    topic = rt.settings.topics.keys

    @router.post(
        "/admin/keys",
        status_code=201,
        response_model=MadeKey,
        responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    )
    async def make_key(body: NewKey, who: Principal = Depends(admin)) -> JsonResponse:  # noqa: B008
        key, key_id = new_key()
        record = ApiKeyRecord(
            id=key_id,
            tenant=body.tenant,
            role=body.role,
            sha256=key_digest(key),
            name=body.name,
            rpm=body.rpm,
            created_at=now_us(),
            by=who.tenant,
        )
        await changes.store(
            topic, key_id, encode(record), rt.keys, lambda: rt.keys.get(key_id) is not None
        )
        log.info("api key %s made for %s (%s) by %s", key_id, body.tenant, body.role, who.tenant)
        return JsonResponse({**key_info(record), "key": key}, status_code=201)

    @router.get("/admin/keys", response_model=KeyList, responses=error_responses(401, 403))
    async def list_keys(_who: Principal = Depends(admin)) -> JsonResponse:  # noqa: B008
        return JsonResponse({"keys": [key_info(r) for r in rt.keys.records()]})

    @router.delete(
        "/admin/keys/{key_id}",
        status_code=204,
        response_class=Response,
        responses=error_responses(401, 403, 404, 422, 503),
    )
    async def revoke_key(
        key_id: str = KeyId,
        who: Principal = Depends(admin),  # noqa: B008
    ) -> Response:
        if rt.keys.get(key_id) is None:
            raise ApiError(404, "not_found", f"no run-time key {key_id}", "key_id")
        await changes.store(topic, key_id, None, rt.keys, lambda: rt.keys.get(key_id) is None)
        log.info("api key %s revoked by %s", key_id, who.tenant)
        return Response(status_code=204)


def _add_usage_route(router: APIRouter, rt: Runtime) -> None:
    @router.get(
        "/tenants/{tenant}/usage",
        response_model=TenantUsage,
        responses=error_responses(401, 403, 422),
    )
    async def tenant_usage(
        tenant: str = TenantName,
        who: Principal = Depends(rt.access.caller),  # noqa: B008
    ) -> JsonResponse:
        if not who.may_read(tenant):
            raise ApiError(403, "forbidden", "a user key reads its own tenant's usage only")
        now = now_us()
        limits = rt.tenants.limits(tenant)
        return JsonResponse(usage(tenant, limits, rt.spend.spent(tenant, now), now))
