"""``POST /v1/jobs`` with ``Accept: text/event-stream``: submit a job and watch it in one request.

A client that submits and then opens ``GET /v1/jobs/{id}/events`` spends a round
trip between the two, and under load its first tokens may already be waiting
when the stream opens. Here the stream is planned in the same request, right
after Kafka stored the job and before a worker can have started it: the answer
is ``200 text/event-stream`` with exactly the events the events endpoint sends
(same ids, so a broken stream resumes there with ``Last-Event-ID``), and names
the job in ``x-tokenrelay-job-id`` and ``Location``.

Should the stream not be plannable at that moment (the fan-out is catching up
after a broker fault), the job is accepted all the same: the answer is then the
ordinary ``202`` body, which says where to watch it.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.core.auth import Principal
from services.core.errors import ApiError, KafkaError
from services.core.http import JsonResponse
from services.core.kafka import Delivered
from services.core.runtime import JobStreams
from services.gateway.openai_wire import JOB_ID_HEADER
from services.gateway.router import SseStream
from services.gateway.watch import Plan, Watches

log = logging.getLogger(__name__)


class _Named(Response):
    """A response sent as ``inner`` sends it, with ``headers`` added to its start."""

    def __init__(self, inner: Response, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(status_code=inner.status_code, media_type=inner.media_type)
        self._inner, self._added = inner, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *self._added]}
            await send(message)

        await self._inner(scope, receive, named)


async def placed_plan(
    watches: Watches, job_id: str, who: Principal, queued: Delivered | None
) -> Plan:
    """Where the stream of a job accepted by this process starts: where its ``queued``
    event landed, with nothing to look up or wait for; else (a repeat under an
    ``Idempotency-Key``) where ``GET /v1/jobs/{id}/events`` would start it."""
    if queued is not None:
        return Plan(job_id, queued.partition, queued.offset, None, None)
    return await watches.plan(job_id, who, None)


def job_streams(watches: Watches) -> JobStreams:
    """What the gateway lends the ingest in its process (``Runtime.job_streams``)."""

    async def stream(
        who: Principal, accepted: dict[str, Any], queued: Delivered | None
    ) -> Response:
        job_id: str = accepted["job_id"]
        try:
            plan = await placed_plan(watches, job_id, who, queued)
        except (ApiError, KafkaError) as exc:
            log.warning("job %s accepted; its stream could not open now: %s", job_id, exc)
            return JsonResponse(accepted, status_code=202)
        names = [
            (JOB_ID_HEADER.encode(), job_id.encode()),
            (b"location", f"/v1/jobs/{job_id}".encode()),
        ]
        return _Named(SseStream(watches, plan), names)

    return stream
