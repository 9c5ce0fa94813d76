"""The ingest as a service part."""

from __future__ import annotations

from services.core.runtime import Runtime, ServicePart
from services.ingest.router import make_router


def create(rt: Runtime) -> ServicePart:
    router, lean_routes = make_router(rt)
    return ServicePart(name="ingest", router=router, lean_routes=lean_routes)
