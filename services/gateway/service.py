"""The gateway as a service part: event streams, and reads of job, batch and queue state."""

from __future__ import annotations

from fastapi import APIRouter

from services.core.runtime import Runtime, ServicePart
from services.gateway.router import make_router
from services.gateway.state_routes import make_state_router


def create(rt: Runtime) -> ServicePart:
    router = APIRouter()
    router.include_router(make_router(rt))
    router.include_router(make_state_router(rt))
    return ServicePart(name="gateway", router=router)
