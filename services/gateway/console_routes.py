"""What an operator's window reads beside job state: who the key is, the workers' group,
and the dead letters.

``GET /v1/me`` (the tenant and role of the key, so a page shows admin actions to
admins only), ``GET /v1/workers`` (the workers' group members and the partitions
each holds, from the broker) and ``GET /v1/admin/dead-letters`` (admin: the
newest letters of ``tokenrelay.jobs.dlq`` with their errors; a letter that holds
its command is retried through ``POST /v1/jobs/{id}/retry``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from schemas.api import Caller, DeadLetters, WorkerGroup
from services.core.auth import Principal
from services.core.errors import ApiError, KafkaError
from services.core.http import JsonResponse, StrictJsonRoute
from services.core.job_log import TopicPartitions
from services.core.kafka.groups import GroupMember
from services.core.openapi import error_responses
from services.core.runtime import Runtime
from services.gateway.dead_letters import read_newest


def member_of(member: GroupMember, show_host: bool) -> dict[str, Any]:
    """A member of the workers' group as ``GET /v1/workers`` shows it (the host to
    admins only: where the workers run is the operators' business)."""
    return {
        "client_id": member.client_id,
        "host": member.host if show_host else None,
        "member_id": member.member_id,
        "partitions": member.partitions,
    }


def make_console_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)
    principal = rt.access.caller
    partitions = TopicPartitions(rt.admin)

    @router.get("/me", response_model=Caller, responses=error_responses(401))
    async def me(who: Principal = Depends(principal)) -> JsonResponse:  # noqa: B008
        return JsonResponse({"tenant": who.tenant, "role": who.role.value})

    @router.get("/workers", response_model=WorkerGroup, responses=error_responses(401, 503))
    async def workers(who: Principal = Depends(principal)) -> JsonResponse:  # noqa: B008
        group = rt.settings.worker_group
        try:
            state, members = await rt.admin.describe_group(group, timeout=3.0)
        except KafkaError as exc:
            raise ApiError(503, "kafka_unavailable", f"cannot describe {group}: {exc}") from exc
        rows = sorted((member_of(m, who.is_admin) for m in members), key=lambda m: m["client_id"])
        return JsonResponse({"group": group, "state": state, "members": rows})

    @router.get(
        "/admin/dead-letters",
        response_model=DeadLetters,
        responses=error_responses(401, 403, 422, 503),
    )
    async def dead_letters(
        who: Principal = Depends(principal),  # noqa: B008
        limit: int = Query(default=50, ge=1, le=500),
    ) -> JsonResponse:
        if not who.is_admin:
            raise ApiError(403, "forbidden", "reading dead letters needs an admin key")
        topic = rt.settings.topics.dlq
        try:
            count = await partitions.count(topic)
            found = await read_newest(rt.clients, rt.admin, topic, count, limit)
        except KafkaError as exc:
            raise ApiError(503, "kafka_unavailable", f"cannot read {topic}: {exc}") from exc
        return JsonResponse({"dead_letters": found})

    return router
