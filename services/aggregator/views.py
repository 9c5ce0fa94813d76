"""The aggregator's web views: any instance answers any question.

A job read is routed by Faust to the instance that owns the job's partition.
Lists, batches, queues and cleaning are gathered: the instance asked calls
``/local/…`` on every instance in the group (itself directly), and answers only
when the parts it got cover every partition; otherwise 503, and the caller
retries (a rebalance is under way).

These views are the aggregator's internal API; the public face
(``services.core.state_client``) adds authentication and tenancy on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from schemas.api import ErrorDetail, JobUnknown, QueueList, Removed
from schemas.jobs import Priority
from schemas.state import JobStatus
from services.aggregator.app import Aggregator
from services.aggregator.index import (
    BatchPart,
    JobFilter,
    decode_cursor,
    encode_cursor,
    newest,
    queue_parts,
    summarize_batch,
    summarize_queues,
)
from services.aggregator.processor import encode_state
from services.core.http import error_body
from services.core.ids import now_us
from services.core.serde import encode

log = logging.getLogger(__name__)

GATHER_TIMEOUT_S = 5.0
MAX_LIMIT = 500

Local = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]


class PartialError(Exception):
    """Some partition had no instance that answered for it."""


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def _model(view: View, body: BaseModel, status: int = 200) -> Response:
    return view.bytes(encode(body), content_type="application/json", status=status)


def _error(view: View, status: int, code: str, message: str, field: str | None = None) -> Response:
    return _json(view, error_body(code, message, field), status)


class Parts:
    """This instance's share of each gathered answer, and the gathering itself."""

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg
        self._http = httpx.AsyncClient(timeout=GATHER_TIMEOUT_S)

    async def gather(self, path: str, params: dict[str, str], local: Local) -> list[dict[str, Any]]:
        """Every instance's part (this one's directly); ``PartialError`` if any is missing."""
        app = self.agg.app
        own = str(app.conf.canonical_url).rstrip("/")
        hosts = {str(h).rstrip("/") for h in app.router.table_metadata(self.agg.jobs.name)}
        if not hosts:
            raise PartialError("no instance owns a partition yet")

        async def one(host: str) -> dict[str, Any]:
            if host == own:
                return await local(params)
            r = await self._http.post(host + path, params=params)
            r.raise_for_status()
            body: dict[str, Any] = r.json()
            return body

        results = await asyncio.gather(*(one(h) for h in sorted(hosts)), return_exceptions=True)
        parts = [r for r in results if isinstance(r, dict)]
        covered = {p for r in parts for p in r["partitions"]}
        if covered != set(range(self.agg.settings.topic_partitions)):
            errors = [str(r) for r in results if isinstance(r, BaseException)]
            raise PartialError(f"partitions {sorted(covered)} answered; {'; '.join(errors)}")
        return parts

    def _owned(self) -> list[int]:
        self.agg.sync_partitions()
        return sorted(self.agg.index.partitions)

    async def jobs(self, q: dict[str, str]) -> dict[str, Any]:
        owned = self._owned()
        after = decode_cursor(q["after"]) if q.get("after") else None
        briefs = (b for _, b in self.agg.index.briefs())
        chosen = newest(briefs, job_filter(q), int(q["limit"]), after)
        states = [self.agg.job(b.job_id) for b in chosen]
        return {
            "partitions": owned,
            "jobs": [s.model_dump(mode="json", by_alias=True) for s in states if s is not None],
        }

    async def batch(self, q: dict[str, str]) -> dict[str, Any]:
        owned = self._owned()
        part = BatchPart.of(self.agg.index.batch_members(q["batch_id"]))
        return {
            "partitions": owned,
            "part": part.to_json() if part else None,
            "paused": self.agg.paused(q["batch_id"]),
        }

    async def queues(self, _q: dict[str, str]) -> dict[str, Any]:
        owned = self._owned()
        parts = queue_parts(b for _, b in self.agg.index.briefs())
        return {"partitions": owned, "queues": {p.value: v for p, v in parts.items()}}

    async def clean(self, q: dict[str, str]) -> dict[str, Any]:
        removed = await self.agg.clean(float(q["older_than_s"]))
        return {"partitions": sorted(self.agg.index.partitions), "removed": removed}


def job_filter(q: dict[str, str]) -> JobFilter:
    """The filter of a list request; ``ValueError`` names a bad value."""
    return JobFilter(
        tenant=q.get("tenant") or None,
        status=JobStatus(q["status"]) if q.get("status") else None,
        priority=Priority(q["priority"]) if q.get("priority") else None,
        batch_id=q.get("batch_id") or None,
    )


def list_limit(q: dict[str, str]) -> int:
    limit = int(q.get("limit", "50"))
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def page_of(jobs: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The newest ``limit`` of the gathered jobs and the cursor after them, if more exist."""

    def order(j: dict[str, Any]) -> tuple[int, str]:
        return (j["queued_at"] or j["updated_at"], j["job_id"])

    ranked = sorted(jobs, key=order, reverse=True)
    page = ranked[:limit]
    return page, encode_cursor(order(page[-1])) if len(ranked) > limit else None


def register(agg: Aggregator) -> None:
    parts = Parts(agg)
    for path, fn in (
        ("/local/jobs", parts.jobs),
        ("/local/batch", parts.batch),
        ("/local/queues", parts.queues),
        ("/local/clean", parts.clean),
    ):
        _register_local(agg, path, fn)
    _register_reads(agg, parts)
    _register_summaries(agg, parts)
    _register_ops(agg, parts)


def _register_local(agg: Aggregator, path: str, fn: Local) -> None:
    class _Local(View):
        async def post(self, request: Request) -> Response:
            if not agg.ready():
                return _error(self, 503, "not_ready", "partitions are being recovered")
            return _json(self, await fn(dict(request.query)))

    agg.app.page(path, name=f"local{path.replace('/', '-')}")(_Local)


def _register_reads(agg: Aggregator, parts: Parts) -> None:
    app = agg.app

    @app.page("/jobs/{job_id}")
    class JobView(View):
        @app.table_route(table=agg.jobs, match_info="job_id")  # type: ignore[arg-type]
        async def get(self, request: Request, job_id: str) -> Response:
            if not agg.ready():
                return _error(self, 503, "not_ready", "partitions are being recovered")
            state = agg.job(job_id)
            if state is None:
                # How far this instance has read, so a caller can tell a job it has
                # not reached yet from one that is gone.
                unknown = JobUnknown(
                    error=ErrorDetail(code="not_found", message=f"no job {job_id}", field="job_id"),
                    applied=agg.reached(),
                )
                return _model(self, unknown, 404)
            return self.bytes(encode_state(state), content_type="application/json")

    @app.page("/jobs")
    class JobsView(View):
        async def get(self, request: Request) -> Response:
            q = dict(request.query)
            try:
                limit = list_limit(q)
                job_filter(q)
            except ValueError as exc:
                return _error(self, 422, "invalid_request", str(exc))
            try:
                if q.get("cursor"):
                    decode_cursor(q["cursor"])
            except ValueError as exc:
                return _error(self, 422, "invalid_request", str(exc), "cursor")
            params = {k: v for k, v in q.items() if k != "cursor"} | {"limit": str(limit + 1)}
            if q.get("cursor"):
                params["after"] = q["cursor"]
            try:
                gathered = await parts.gather("/local/jobs", params, parts.jobs)
            except PartialError as exc:
                return _error(self, 503, "not_ready", str(exc))
            page, cursor = page_of([j for p in gathered for j in p["jobs"]], limit)
            return _json(self, {"jobs": page, "next_cursor": cursor})


def _register_summaries(agg: Aggregator, parts: Parts) -> None:
    app = agg.app

    @app.page("/batches/{batch_id}")
    class BatchView(View):
        async def get(self, request: Request, batch_id: str) -> Response:
            try:
                gathered = await parts.gather("/local/batch", {"batch_id": batch_id}, parts.batch)
            except PartialError as exc:
                return _error(self, 503, "not_ready", str(exc))
            summary = summarize_batch(
                batch_id,
                [BatchPart(**p["part"]) for p in gathered if p["part"]],
                paused=any(p["paused"] for p in gathered),
                now_us=now_us(),
            )
            if summary is None:
                return _error(self, 404, "not_found", f"no batch {batch_id}", "batch_id")
            return _model(self, summary)

    @app.page("/queues")
    class QueuesView(View):
        async def get(self, request: Request) -> Response:
            try:
                gathered = await parts.gather("/local/queues", {}, parts.queues)
            except PartialError as exc:
                return _error(self, 503, "not_ready", str(exc))
            queues = summarize_queues([p["queues"] for p in gathered], now_us())
            return _model(self, QueueList(queues=queues))


def _register_ops(agg: Aggregator, parts: Parts) -> None:
    app = agg.app

    @app.page("/clean")
    class CleanView(View):
        async def post(self, request: Request) -> Response:
            try:
                older = float(request.query["older_than_s"])
            except (KeyError, ValueError):
                older = -1.0
            if not older >= 0:
                return _error(self, 422, "invalid_request", "older_than_s >= 0", "older_than_s")
            try:
                gathered = await parts.gather(
                    "/local/clean", {"older_than_s": str(older)}, parts.clean
                )
            except PartialError as exc:
                return _error(self, 503, "not_ready", str(exc))
            removed = sum(int(p["removed"]) for p in gathered)
            log.info("clean: removed %d finished jobs older than %.0fs", removed, older)
            return _model(self, Removed(removed=removed))

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return _json(self, {"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            reasons = agg.not_ready_reasons()
            if not reasons:
                return _json(self, {"status": "ready"})
            return _json(self, {"status": "not ready", "reasons": reasons}, 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
