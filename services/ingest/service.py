"""The ingest as a service part."""

from __future__ import annotations

from services.core.runtime import Runtime, ServicePart
from services.ingest.router import make_router


def create(rt: Runtime) -> ServicePart:
    return ServicePart(name="ingest", router=make_router(rt))
