"""Who is calling: the API key of a request, as a FastAPI dependency."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

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


class Access:
    """Resolves API keys and stream tokens to a ``Principal``."""

    def __init__(self, settings: Settings) -> None:
        spec = settings.api_keys.get_secret_value()
        self._keys = parse_api_keys(spec)
        secret = settings.stream_token_secret
        self._secret = secret.get_secret_value().encode() if secret else derive_secret(spec)
        self._ttl = settings.stream_token_ttl_s

    def from_key(self, key: str | None) -> Principal:
        if not key:
            raise ApiError(401, "unauthenticated", "send an API key: Authorization: Bearer <key>")
        principal = self._keys.get(key)
        if principal is None:
            raise ApiError(401, "unauthenticated", "unknown API key")
        return principal

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
        return Principal(tenant, Role.USER)

    def principal(self, request: Request) -> Principal:
        """The caller of a ``/v1`` request: ``Authorization: Bearer`` or ``X-API-Key``."""
        return self.from_headers(request.headers)

    def from_headers(self, headers: Mapping[str, str]) -> Principal:
        """The caller named by ``Authorization: Bearer`` or ``X-API-Key`` (a websocket's too)."""
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        return self.from_key(key or headers.get("x-api-key"))
