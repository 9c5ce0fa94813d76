"""The gateway as a service part."""

from __future__ import annotations

from services.core.runtime import Runtime, ServicePart
from services.gateway.router import make_router


def create(rt: Runtime) -> ServicePart:
    return ServicePart(name="gateway", router=make_router(rt))
