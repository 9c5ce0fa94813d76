"""Who is calling: the API key of a request, as a FastAPI dependency.

A key is one of ``TOKENRELAY_API_KEYS`` or one made at run time (``POST
/v1/admin/keys``), which every process follows from ``tokenrelay.keys``.

The security schemes are declared here so that the OpenAPI names them: an API
key as ``Authorization: Bearer`` or ``X-API-Key`` on every ``/v1`` route, and
the stream token (``?token=``) on a job's event stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import Request, Security
from fastapi.security import (
    APIKeyHeader,
    APIKeyQuery,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)

from services.core.auth import (
    Principal,
    Role,
    check_stream_token,
    derive_secret,
    make_stream_token,
    parse_api_keys,
)
from services.core.errors import ApiError
from services.core.settings import Settings
from services.core.tenancy import KeyRing

Caller = Callable[..., Awaitable[Principal]]
"""What every router takes as its ``Depends`` target: ``Access.caller`` (or a wrapper of it)."""

BEARER = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <API key>`"
)
API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="The API key."
)
STREAM_TOKEN = APIKeyQuery(
    name="token",
    auto_error=False,
    scheme_name="streamToken",
    description="The `stream_token` that `POST /v1/jobs` answered: reads that job's events only.",
)


class Access:
    """Resolves API keys and stream tokens to a ``Principal``."""

    def __init__(self, settings: Settings, run_time_keys: KeyRing | None = None) -> None:
        spec = settings.api_keys.get_secret_value()
        self._keys = parse_api_keys(spec)
        self._run_time = run_time_keys if run_time_keys is not None else KeyRing()
        """Keys made through ``POST /v1/admin/keys``, as this process has read them."""
        secret = settings.stream_token_secret
        self._secret = secret.get_secret_value().encode() if secret else derive_secret(spec)
        self._ttl = settings.stream_token_ttl_s

    def from_key(self, key: str | None) -> Principal:
        if not key:
            raise ApiError(401, "unauthenticated", "send an API key: Authorization: Bearer <key>")
        principal = self._keys.get(key)
        if principal is not None:
            return principal
        record = self._run_time.find(key)
        if record is None:
            raise ApiError(401, "unauthenticated", "unknown API key")
        return Principal(record.tenant, Role(record.role), f"key:{record.id}", record.rpm)

    def stream_token(self, job_id: str, tenant: str) -> str:
        return make_stream_token(self._secret, job_id, tenant, self._ttl)

    def from_stream_token(self, token: str, job_id: str) -> Principal:
        tenant = check_stream_token(self._secret, token, job_id)
        if tenant is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the stream token is invalid, expired or for another job",
                "token",
            )
        return Principal(tenant, Role.USER, f"stream:{tenant}")

    async def caller(
        self,
        request: Request,
        _bearer: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
        _key: str | None = Security(API_KEY),
    ) -> Principal:
        """The dependency of every ``/v1`` route: the caller, or 401."""
        return self.principal(request)

    def principal(self, request: Request) -> Principal:
        """The caller of a ``/v1`` request: ``Authorization: Bearer`` or ``X-API-Key``."""
        return self.from_headers(request.headers)

    def from_headers(self, headers: Mapping[str, str]) -> Principal:
        """The caller named by ``Authorization: Bearer`` or ``X-API-Key`` (a websocket's too)."""
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        return self.from_key(key or headers.get("x-api-key"))
