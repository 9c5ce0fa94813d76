"""The worker as a service part: the runner, ready once it joined its group and read control."""

from __future__ import annotations

from services.core.runtime import Runtime, ServicePart
from services.worker.providers.registry import make_providers
from services.worker.runner import WorkerRunner


def create(rt: Runtime) -> ServicePart:
    runner = WorkerRunner(
        rt.settings, rt.producer, make_providers(rt.settings), rt.prices, tenants=rt.tenants
    )
    runner.spend = rt.spend  # followed by the process (serve.tenancy_part)
    runner.breakdown = rt.breakdown

    async def ready() -> str | None:
        return runner.ready_reason()

    return ServicePart(name="worker", start=runner.start, stop=runner.stop, checks=[ready])
