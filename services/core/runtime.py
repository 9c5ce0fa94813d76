"""What a service gets from the process that hosts it, and what it gives back.

A service module exposes ``create(runtime) -> ServicePart``: an optional
``APIRouter``, background runners with start/stop, and readiness checks.
``services.serve`` composes any set of parts into one process; the service
knows nothing of how it is deployed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response
from starlette.routing import BaseRoute

from services.core.access import Access
from services.core.auth import Principal
from services.core.breakdown import Breakdown
from services.core.http import ReadinessCheck
from services.core.kafka import Admin, Delivered, KafkaClients, Producer
from services.core.kafka.probe import Probe
from services.core.prices import Prices
from services.core.quotas import TenantRates
from services.core.settings import Settings
from services.core.state_client import StateClient
from services.core.tenancy import KeyRing, SpendBook, TenantPolicies

JobStreams = Callable[[Principal, dict[str, Any], Delivered | None], Awaitable[Response]]
"""The event stream of a job just accepted, for whom, given its 202 body and where its
``queued`` event landed (None: unknown here, a repeat under an ``Idempotency-Key``)."""


@dataclass
class Runtime:
    settings: Settings
    clients: KafkaClients
    """Makes the process's Kafka clients, with its brokers and security."""
    producer: Producer
    admin: Admin
    access: Access
    state: StateClient
    prices: Prices
    kafka: Probe
    """Whether Kafka answers, checked in the background: ``/readyz`` and submissions read it."""
    tenants: TenantPolicies = field(default_factory=TenantPolicies)
    """Each tenant's policy (weight, caps, quotas), followed from ``tokenrelay.tenants``."""
    keys: KeyRing = field(default_factory=KeyRing)
    """The API keys made at run time, followed from ``tokenrelay.keys``."""
    spend: SpendBook = field(default_factory=SpendBook)
    """What each tenant spent today and this month, followed from ``tokenrelay.spend``."""
    rates: TenantRates = field(default_factory=TenantRates)
    """Each tenant's jobs per minute in this process (``rpm``)."""
    breakdown: Breakdown = field(default_factory=Breakdown)
    """Where a part that stopped for good says so; the process then exits to be replaced."""
    job_streams: JobStreams | None = None
    """The event stream of a job just accepted here, given its 202 body: set by the gateway
    when it runs in this process (``POST /v1/jobs`` with ``Accept: text/event-stream``)."""


@dataclass
class ServicePart:
    name: str
    router: APIRouter | None = None
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    drain: Callable[[], Awaitable[None]] | None = None
    """Run when the server begins to shut down, before it waits for open connections."""
    checks: list[ReadinessCheck] = field(default_factory=list)
    lean_routes: list[BaseRoute] = field(default_factory=list)
    """Plain Starlette routes the app tries before every router (a hot path without
    FastAPI's per-request machinery; its documented twin stays in ``router``)."""
