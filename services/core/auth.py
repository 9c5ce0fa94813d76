"""API keys (``key:tenant:role``) and the short-lived signed stream tokens.

A stream token lets a browser's EventSource, which cannot send headers, read
one job's events: ``<job_id>.<tenant>.<expiry>.<hmac>``, HMAC-SHA256 over the
first three parts with ``TOKENRELAY_STREAM_TOKEN_SECRET`` (by default derived
from ``TOKENRELAY_API_KEYS``, so every process of one deployment agrees).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from enum import StrEnum

from services.core.errors import ConfigError
from services.core.rate import key_id


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    role: Role
    caller: str = field(default="", compare=False)
    """Who is counted against per-key limits: a hash of the API key, never the key."""
    rpm: int | None = field(default=None, compare=False)
    """Jobs this key may submit per minute (a run-time key's own limit), if any."""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_read(self, tenant: str) -> bool:
        return self.is_admin or self.tenant == tenant


def parse_api_keys(spec: str) -> dict[str, Principal]:
    """Parse ``key:tenant:role,…``; a malformed entry is a ``ConfigError`` naming it."""
    keys: dict[str, Principal] = {}
    for n, raw in enumerate(spec.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(parts):
            raise ConfigError(
                f"TOKENRELAY_API_KEYS entry {n} is not 'key:tenant:role' (role admin or user)"
            )
        key, tenant, role = parts
        try:
            keys[key] = Principal(tenant, Role(role), key_id(key))
        except ValueError as exc:
            raise ConfigError(
                f"TOKENRELAY_API_KEYS entry {n}: role must be admin or user, not {role!r}"
            ) from exc
    if not keys:
        raise ConfigError("TOKENRELAY_API_KEYS holds no key")
    return keys


def derive_secret(api_keys_spec: str) -> bytes:
    return hashlib.sha256(b"tokenrelay-stream-token\0" + api_keys_spec.encode()).digest()


def _sign(secret: bytes, payload: str) -> str:
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def make_stream_token(
    secret: bytes, job_id: str, tenant: str, ttl_s: int, now: float | None = None
) -> str:
    expiry = int((time.time() if now is None else now) + ttl_s)
    payload = f"{job_id}.{tenant}.{expiry}"
    return f"{payload}.{_sign(secret, payload)}"


def check_stream_token(
    secret: bytes, token: str, job_id: str, now: float | None = None
) -> str | None:
    """The tenant the token was issued to, if it is genuine, for ``job_id`` and unexpired."""
    parts = token.rsplit(".", 3)
    if len(parts) != 4:
        return None
    tok_job, tenant, expiry, mac = parts
    if not hmac.compare_digest(mac, _sign(secret, f"{tok_job}.{tenant}.{expiry}")):
        return None
    if tok_job != job_id or not expiry.isdigit():
        return None
    if int(expiry) < (time.time() if now is None else now):
        return None
    return tenant
