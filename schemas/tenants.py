"""What ``tokenrelay.tenants`` and ``tokenrelay.keys`` carry: each tenant's policy and the
API keys made at run time.

Both topics are compacted and keyed by what a record describes (the tenant's
name, the key's id), so the latest record of each key is the truth and the
topic stays as small as the set of tenants and keys. Every process reads both
whole at its start and then follows them, so a change made through the admin
API holds on every process within about a second.

A key is stored as its SHA-256, never in the clear; a revoked key's id gets a
tombstone (a record with no value).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A tenant's name: what an API key names, a path segment, a ClickHouse value."""


class TenantLimits(BaseModel):
    """What an admin sets for a tenant; every field is optional, and None means no limit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    weight: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Its share of the workers within a priority, against the other tenants' "
        "weights (weighted fair queuing).",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=100_000, description="Its jobs running at once, fleet-wide."
    )
    rpm: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Jobs it may submit per minute."
    )
    tokens_per_day: int | None = Field(
        default=None, ge=1, description="Prompt and completion tokens per UTC day."
    )
    budget_usd_per_day: float | None = Field(
        default=None, ge=0, description="USD it may spend per UTC day."
    )
    budget_usd_per_month: float | None = Field(
        default=None, ge=0, description="USD it may spend per UTC calendar month."
    )


class TenantPolicy(TenantLimits):
    """A record of ``tokenrelay.tenants``: a tenant's limits, as last set."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    schema_: Literal["tokenrelay.TenantPolicy/1"] = Field(
        default="tokenrelay.TenantPolicy/1", alias="schema"
    )
    tenant: str = Field(pattern=TENANT_PATTERN)
    updated_at: int = Field(description="Microseconds since the Unix epoch.")
    by: str = Field(description="The admin's tenant that set it.")

    def limits(self) -> TenantLimits:
        return TenantLimits.model_validate(self.model_dump(include=set(TenantLimits.model_fields)))


class ApiKeyRecord(BaseModel):
    """A record of ``tokenrelay.keys``: an API key made through ``POST /v1/admin/keys``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.ApiKey/1"] = Field(default="tokenrelay.ApiKey/1", alias="schema")
    id: str = Field(pattern=r"^[a-f0-9]{16}$", description="Public: names the key in lists.")
    tenant: str = Field(pattern=TENANT_PATTERN)
    role: Literal["admin", "user"]
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$", description="SHA-256 of the key, hex.")
    name: str | None = Field(default=None, max_length=200, description="What it is for.")
    rpm: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Jobs the key may submit per minute."
    )
    created_at: int = Field(description="Microseconds since the Unix epoch.")
    by: str = Field(description="The admin's tenant that made it.")


class TenantSpend(BaseModel):
    """A record of ``tokenrelay.spend``: what a tenant has spent, keyed by tenant.

    Written by the analytics part from ClickHouse's ``cost_hourly`` (the finished
    jobs, inserted exactly once from the lifecycle log), about once a second when
    a figure changed; read by ingest (admission) and the workers (mid-stream stops).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["tokenrelay.TenantSpend/1"] = Field(
        default="tokenrelay.TenantSpend/1", alias="schema"
    )
    tenant: str
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="The UTC day of `*_day`.")
    usd_day: float = Field(ge=0, description="USD of jobs finished that day.")
    tokens_day: int = Field(ge=0, description="Prompt and completion tokens that day.")
    usd_month: float = Field(ge=0, description="USD of jobs finished in the day's month.")
    jobs_day: int = Field(ge=0)
    as_of: int = Field(description="When ClickHouse was read, microseconds since the epoch.")


# --- the admin API's bodies and answers ------------------------------------------------


class TenantList(BaseModel):
    tenants: list[TenantPolicy]


class NewKey(BaseModel):
    """``POST /v1/admin/keys``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: str = Field(pattern=TENANT_PATTERN)
    role: Literal["admin", "user"] = "user"
    name: str | None = Field(default=None, max_length=200)
    rpm: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Jobs the key may submit per minute, "
        "within its tenant's limits."
    )


class KeyInfo(BaseModel):
    """A run-time key as lists show it: never the key itself."""

    id: str
    tenant: str
    role: Literal["admin", "user"]
    name: str | None
    rpm: int | None
    created_at: int
    by: str


class MadeKey(KeyInfo):
    """The answer to ``POST /v1/admin/keys``: the key, shown this once."""

    key: str


class KeyList(BaseModel):
    keys: list[KeyInfo]


class UsageFigures(BaseModel):
    usd_day: float
    tokens_day: int
    usd_month: float


class OptionalFigures(BaseModel):
    usd_day: float | None
    tokens_day: int | None
    usd_month: float | None


class TenantUsage(BaseModel):
    """``GET /v1/tenants/{tenant}/usage``: spend against limits, and when each resets."""

    tenant: str
    day: str
    month: str
    spent: UsageFigures
    limits: TenantLimits
    remaining: OptionalFigures = Field(description="None where there is no limit.")
    day_resets_at: str = Field(description="ISO 8601, UTC: the next midnight.")
    month_resets_at: str = Field(description="ISO 8601, UTC: the first of next month.")
    as_of: int | None = Field(description="When the spend was read from ClickHouse (µs).")
