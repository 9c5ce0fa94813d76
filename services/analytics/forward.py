"""``/v1/analytics`` on a public face that does not hold the analytics: forwarded.

The embedded ClickHouse (chDB) lives in one process. When ``make up`` runs
several gateway processes behind one port (``TOKENRELAY_GATEWAYS``), analytics
runs in a process of its own, and each gateway passes ``/v1/analytics/*``
through to it (``TOKENRELAY_ANALYTICS_URL``): same method, path, query, body
and credentials; the answer comes back as it was given, errors included. If
that process does not answer, the caller gets a 503 ``analytics_unavailable``
with ``Retry-After``. Analytics answers are bounded JSON (row and time
budgets), so they are relayed whole, not streamed.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.core.errors import ApiError
from services.core.runtime import Runtime, ServicePart

TIMEOUT_S = 70.0
"""Above the longest analytics query the analytics process allows (its time budgets)."""
PASSED_ON = ("authorization", "x-api-key", "content-type", "accept", "traceparent")
"""Request headers the analytics process needs."""
PASSED_BACK = ("content-type", "retry-after", "cache-control")
"""Answer headers the caller needs."""


def create(rt: Runtime) -> ServicePart:
    url = rt.settings.analytics_url
    assert url is not None
    http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=TIMEOUT_S)
    router = APIRouter()

    @router.api_route("/v1/analytics/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def forward(request: Request, rest: str) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in PASSED_ON}
        try:
            answer = await http.request(
                request.method,
                f"/v1/analytics/{rest}",
                params=request.url.query,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise ApiError(
                503,
                "analytics_unavailable",
                f"the analytics process does not answer: {exc}",
                headers={"Retry-After": "2"},
            ) from exc
        back = {k: v for k, v in answer.headers.items() if k in PASSED_BACK}
        return Response(answer.content, status_code=answer.status_code, headers=back)

    return ServicePart(name="analytics-forward", router=router, stop=http.aclose)
