"""What a service gets from the process that hosts it, and what it gives back.

A service module exposes ``create(runtime) -> ServicePart``: an optional
``APIRouter``, background runners with start/stop, and readiness checks.
``services.serve`` composes any set of parts into one process; the service
knows nothing of how it is deployed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter
from starlette.routing import BaseRoute

from services.core.access import Access
from services.core.http import ReadinessCheck
from services.core.kafka import Admin, KafkaClients, Producer
from services.core.kafka.probe import Probe
from services.core.prices import Prices
from services.core.settings import Settings
from services.core.state_client import StateClient


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
