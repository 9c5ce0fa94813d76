"""The public face's client of the aggregator's web views (job, batch and queue state).

The aggregator is a Faust app; any of its instances answers any question (it
routes a job read to the instance that holds the job, and gathers lists, batch
and queue figures from all of them). This client speaks to one base URL and
turns transport failures into ``StateUnavailableError`` (a 503 to clients). Ids
go into its URLs escaped, whatever reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from schemas.api import JobList, JobUnknown, QueueList, Removed
from schemas.jobs import Priority
from schemas.state import BatchSummary, JobState, JobStatus, PriorityQueue
from services.core.errors import ApiError

TIMEOUT_S = 5.0


class StateUnavailableError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(503, "state_unavailable", message)


@dataclass(frozen=True, slots=True)
class Lookup:
    state: JobState | None
    applied: dict[int, int]
    """When there is no state: per partition, the last offset the aggregator applied."""

    def reached(self, partition: int, offset: int) -> bool:
        """Whether the aggregator has applied the event at ``offset`` of ``partition``."""
        return self.applied.get(partition, -1) >= offset


class StateClient:
    def __init__(self, base_url: str, timeout: float = TIMEOUT_S) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return await self._call("GET", path, params)

    async def _call(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._http.request(method, path, params=query)
        except httpx.HTTPError as exc:
            raise StateUnavailableError(f"job state is unavailable: {exc}") from exc
        if r.status_code >= 500:
            raise StateUnavailableError(f"job state is unavailable: {r.status_code} {r.text[:200]}")
        if r.status_code >= 400 and r.status_code != 404:
            err = r.json().get("error", {})
            raise ApiError(
                r.status_code,
                err.get("code", "invalid_request"),
                err.get("message", ""),
                err.get("field"),
            )
        return r

    async def job(self, job_id: str) -> JobState | None:
        return (await self.lookup(job_id)).state

    async def lookup(self, job_id: str) -> Lookup:
        """The job's state, or how far the aggregator has read the job's partition."""
        r = await self._get(f"/jobs/{quote(job_id, safe='')}")
        if r.status_code == 404:
            return Lookup(None, JobUnknown.model_validate_json(r.content).applied)
        return Lookup(JobState.model_validate_json(r.content), {})

    async def jobs(
        self,
        *,
        tenant: str | None = None,
        status: JobStatus | None = None,
        priority: Priority | None = None,
        batch_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[JobState], str | None]:
        """Newest first; ``tenant=None`` lists every tenant's jobs (admins)."""
        r = await self._get(
            "/jobs",
            {
                "tenant": tenant,
                "status": status,
                "priority": priority,
                "batch_id": batch_id,
                "limit": limit,
                "cursor": cursor,
            },
        )
        page = JobList.model_validate_json(r.content)
        return page.jobs, page.next_cursor

    async def batch(self, batch_id: str) -> BatchSummary | None:
        r = await self._get(f"/batches/{quote(batch_id, safe='')}")
        if r.status_code == 404:
            return None
        return BatchSummary.model_validate_json(r.content)

    async def queues(self) -> list[PriorityQueue]:
        r = await self._get("/queues")
        return QueueList.model_validate_json(r.content).queues

    async def clean(self, older_than_s: float) -> int:
        """Remove finished jobs older than this from every instance; how many went."""
        r = await self._call("POST", "/clean", {"older_than_s": older_than_s})
        return Removed.model_validate_json(r.content).removed

    async def close(self) -> None:
        await self._http.aclose()
