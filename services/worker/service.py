"""The worker as a service part: the runner, and readiness once it joined its group."""

from __future__ import annotations

from services.core.runtime import Runtime, ServicePart
from services.worker.providers.registry import make_providers
from services.worker.runner import WorkerRunner


def create(rt: Runtime) -> ServicePart:
    runner = WorkerRunner(rt.settings, rt.producer, make_providers(rt.settings))

    async def joined() -> str | None:
        return None if runner.joined.is_set() else "the worker has not joined its group yet"

    return ServicePart(name="worker", start=runner.start, stop=runner.stop, checks=[joined])
