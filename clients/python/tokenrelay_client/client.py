"""``Client`` and ``AsyncClient``: the same calls, blocking and as coroutines.

Every call is one request of the public API (``docs/api.md``), except
``stream`` (which reopens a broken stream after its last event, see
``resume``), ``tokens`` (the text of its token events, of one attempt), ``wait``
(the stream to its end, then the final state) and ``jobs.list`` (every page).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from tokenrelay_client.errors import StartedOverError, TokenrelayError, error_of
from tokenrelay_client.models import Batch, Event, Job, JobState, TokenEvent, event_of
from tokenrelay_client.resume import Resume
from tokenrelay_client.sse import Parser

STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)
"""A stream is quiet at most a heartbeat's interval (15 s by default): 60 s of silence is a
dead connection, which ``stream`` resumes."""
SETTLE_S = 10.0
"""How long ``wait`` polls for the job state to show the end its stream already showed."""


class _OneAttempt:
    """The text of one attempt of a job. A token of a later attempt, once text went out,
    raises; one of an earlier attempt (from a worker that had not yet stopped when its job
    moved on) is skipped."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.attempt: int | None = None
        self.last_id: str | None = None

    def text(self, event: Event) -> str | None:
        text = None
        if isinstance(event, TokenEvent):
            if self.attempt is None or event.attempt == self.attempt:
                self.attempt, text = event.attempt, event.text
            elif event.attempt > self.attempt:
                raise StartedOverError(self.job_id, event.attempt, self.last_id)
        self.last_id = event.id
        return text


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _checked(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        raise error_of(resp.status_code, _body(resp))
    return _body(resp) if resp.content else None


def _job_body(
    prompt: str | None, messages: list[dict[str, str]] | None, **options: Any
) -> dict[str, Any]:
    body = {k: v for k, v in options.items() if v is not None}
    if prompt is not None:
        body["prompt"] = prompt
    if messages is not None:
        body["messages"] = messages
    return body


def _query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _jsonl(jobs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``POST /v1/batches`` as JSON Lines: one job body per line."""
    lines = b"".join(json.dumps(j).encode() + b"\n" for j in jobs)
    return {"content": lines, "headers": {"Content-Type": "application/x-ndjson"}}


# --- blocking ------------------------------------------------------------------------------


class Client:
    """A blocking client; a context manager that closes its connections."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        give_up_s: float = 120.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.give_up_s = give_up_s
        self.jobs = _Jobs(self)
        self.batches = _Batches(self)
        self.analytics = _Analytics(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _checked(self._http.request(method, path, **kwargs))

    def submit(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """``POST /v1/jobs``: ``options`` are the body's other fields (model, max_tokens…)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = _job_body(prompt, messages, **options)
        return Job.model_validate(self._call("POST", "/v1/jobs", json=body, headers=headers))

    def get(self, job_id: str) -> JobState:
        return JobState.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def result(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}/result`` (a ``TokenrelayError`` 409 until the job ended)."""
        answer: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/result")
        return answer

    def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        answer: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel", json=body)
        return answer

    def retry(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/retry")
        return answer

    def stream(self, job_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events to its end, reopened after its last event when it breaks."""
        resume = Resume(last_event_id, self.give_up_s)
        path = f"/v1/jobs/{job_id}/events"
        while True:
            try:
                with self._http.stream(
                    "GET", path, headers=resume.headers(), timeout=STREAM_TIMEOUT
                ) as resp:
                    if resp.status_code == 204:  # resumed after the terminal event
                        return
                    if resp.status_code != 200:
                        resp.read()
                        raise error_of(resp.status_code, _body(resp))
                    parser = Parser()
                    for line in resp.iter_lines():
                        frame = parser.feed(line)
                        if frame is None:
                            continue
                        event = event_of(frame.event, frame.data, frame.id)
                        resume.progressed(frame.id)
                        yield event
                        if event.terminal:
                            return
                pause = resume.failed(ConnectionError("the stream ended before the job"))
            except (httpx.TransportError, TokenrelayError) as exc:
                pause = resume.failed(exc)
            time.sleep(pause)

    def tokens(self, job_id: str, last_event_id: str | None = None) -> Iterator[str]:
        """The text of each token, as it arrives, all of one attempt: when the job starts
        over after text went out (a retry, or a worker that failed), ``StartedOverError``."""
        one = _OneAttempt(job_id)
        for event in self.stream(job_id, last_event_id):
            if (text := one.text(event)) is not None:
                yield text

    def wait(self, job_id: str) -> JobState:
        """The job's final state, once its stream ended."""
        for _ in self.stream(job_id):
            pass
        give_up = time.monotonic() + SETTLE_S
        while not (state := self.get(job_id)).finished and time.monotonic() < give_up:
            time.sleep(0.2)
        return state


class _Jobs:
    def __init__(self, client: Client) -> None:
        self._c = client

    def list(
        self,
        status: str | None = None,
        priority: str | None = None,
        batch_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[JobState]:
        """Every matching job, newest first, page after page."""
        cursor = None
        while True:
            q = _query(
                status=status, priority=priority, batch_id=batch_id, limit=page_size, cursor=cursor
            )
            page = self._c._call("GET", "/v1/jobs", params=q)
            yield from (JobState.model_validate(j) for j in page["jobs"])
            cursor = page["next_cursor"]
            if cursor is None:
                return


class _Batches:
    def __init__(self, client: Client) -> None:
        self._c = client

    def submit(self, jobs: Iterable[dict[str, Any]]) -> Batch:
        """``POST /v1/batches`` as JSON Lines: one job body per line."""
        return Batch.model_validate(self._c._call("POST", "/v1/batches", **_jsonl(jobs)))

    def get(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._c._call("GET", f"/v1/batches/{batch_id}"))

    def pause(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._c._call("POST", f"/v1/batches/{batch_id}/pause")
        return answer

    def resume(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._c._call("POST", f"/v1/batches/{batch_id}/resume")
        return answer

    def cancel(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._c._call("POST", f"/v1/batches/{batch_id}/cancel")
        return answer


class _Analytics:
    def __init__(self, client: Client) -> None:
        self._c = client

    def cost(
        self, group_by: str = "model", since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        q = _query(group_by=group_by, since=since, until=until)
        rows: list[dict[str, Any]] = self._c._call("GET", "/v1/analytics/cost", params=q)["rows"]
        return rows

    def sql(self, query: str) -> dict[str, Any]:
        """``POST /v1/analytics/sql`` (admin): ``{"columns", "rows"}``."""
        answer: dict[str, Any] = self._c._call("POST", "/v1/analytics/sql", json={"sql": query})
        return answer


# --- async ---------------------------------------------------------------------------------


class AsyncClient:
    """``Client``'s calls as coroutines (``stream`` and ``tokens``: async iterators)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        give_up_s: float = 120.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self.give_up_s = give_up_s
        self.jobs = _AsyncJobs(self)
        self.batches = _AsyncBatches(self)
        self.analytics = _AsyncAnalytics(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _checked(await self._http.request(method, path, **kwargs))

    async def submit(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = _job_body(prompt, messages, **options)
        return Job.model_validate(await self._call("POST", "/v1/jobs", json=body, headers=headers))

    async def get(self, job_id: str) -> JobState:
        return JobState.model_validate(await self._call("GET", f"/v1/jobs/{job_id}"))

    async def result(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", f"/v1/jobs/{job_id}/result")
        return answer

    async def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        answer: dict[str, Any] = await self._call("POST", f"/v1/jobs/{job_id}/cancel", json=body)
        return answer

    async def retry(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("POST", f"/v1/jobs/{job_id}/retry")
        return answer

    async def stream(self, job_id: str, last_event_id: str | None = None) -> AsyncIterator[Event]:
        resume = Resume(last_event_id, self.give_up_s)
        path = f"/v1/jobs/{job_id}/events"
        while True:
            try:
                async with self._http.stream(
                    "GET", path, headers=resume.headers(), timeout=STREAM_TIMEOUT
                ) as resp:
                    if resp.status_code == 204:
                        return
                    if resp.status_code != 200:
                        await resp.aread()
                        raise error_of(resp.status_code, _body(resp))
                    parser = Parser()
                    async for line in resp.aiter_lines():
                        frame = parser.feed(line)
                        if frame is None:
                            continue
                        event = event_of(frame.event, frame.data, frame.id)
                        resume.progressed(frame.id)
                        yield event
                        if event.terminal:
                            return
                pause = resume.failed(ConnectionError("the stream ended before the job"))
            except (httpx.TransportError, TokenrelayError) as exc:
                pause = resume.failed(exc)
            await asyncio.sleep(pause)

    async def tokens(self, job_id: str, last_event_id: str | None = None) -> AsyncIterator[str]:
        one = _OneAttempt(job_id)
        async for event in self.stream(job_id, last_event_id):
            if (text := one.text(event)) is not None:
                yield text

    async def wait(self, job_id: str) -> JobState:
        async for _ in self.stream(job_id):
            pass
        give_up = time.monotonic() + SETTLE_S
        # a remote state, polled with a deadline: there is no local event to wait on
        while not (state := await self.get(job_id)).finished and time.monotonic() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return state


class _AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def list(
        self,
        status: str | None = None,
        priority: str | None = None,
        batch_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[JobState]:
        cursor = None
        while True:
            q = _query(
                status=status, priority=priority, batch_id=batch_id, limit=page_size, cursor=cursor
            )
            page = await self._c._call("GET", "/v1/jobs", params=q)
            for j in page["jobs"]:
                yield JobState.model_validate(j)
            cursor = page["next_cursor"]
            if cursor is None:
                return


class _AsyncBatches:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def submit(self, jobs: Iterable[dict[str, Any]]) -> Batch:
        return Batch.model_validate(await self._c._call("POST", "/v1/batches", **_jsonl(jobs)))

    async def get(self, batch_id: str) -> Batch:
        return Batch.model_validate(await self._c._call("GET", f"/v1/batches/{batch_id}"))

    async def pause(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._c._call("POST", f"/v1/batches/{batch_id}/pause")
        return answer

    async def resume(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._c._call("POST", f"/v1/batches/{batch_id}/resume")
        return answer

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._c._call("POST", f"/v1/batches/{batch_id}/cancel")
        return answer


class _AsyncAnalytics:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def cost(
        self, group_by: str = "model", since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        q = _query(group_by=group_by, since=since, until=until)
        answer = await self._c._call("GET", "/v1/analytics/cost", params=q)
        rows: list[dict[str, Any]] = answer["rows"]
        return rows

    async def sql(self, query: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._c._call(
            "POST", "/v1/analytics/sql", json={"sql": query}
        )
        return answer
