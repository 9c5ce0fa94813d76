"""Compose service parts into one process: ``tokenrelay serve ingest gateway worker``.

The process owns one producer and one admin client that every part shares,
creates the topics at start, starts the parts' runners, and on shutdown stops
them in reverse order before flushing the producer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from importlib.metadata import version
from types import FrameType

import httpx
import uvicorn
from fastapi import FastAPI

from services.analytics import forward as analytics_forward
from services.analytics import service as analytics
from services.core import gc_pauses, openapi, tracing
from services.core.access import Access
from services.core.after_response import AfterResponse
from services.core.breakdown import EXIT_BROKEN
from services.core.cors import install_cors
from services.core.errors import ConfigError, KafkaError
from services.core.fatal_signals import load_chdb
from services.core.http import (
    BodyLimit,
    JsonResponse,
    ReadinessCheck,
    health_router,
    install_error_handlers,
)
from services.core.kafka import Admin, KafkaClients
from services.core.kafka.probe import Probe, kafka_answers, workers_in_group
from services.core.lean_http import LeanHttpToolsProtocol
from services.core.prices import load_prices
from services.core.runtime import Runtime, ServicePart
from services.core.settings import Settings
from services.core.sockets import listening_socket
from services.core.state_client import StateClient
from services.core.tenancy import KeyRing
from services.core.tenancy_follower import TenancyFollower
from services.core.topics import ensure_topics, topic_specs
from services.gateway import service as gateway
from services.ingest import service as ingest
from services.worker import service as worker

log = logging.getLogger(__name__)

SERVICES: dict[str, Callable[[Runtime], ServicePart]] = {
    "ingest": ingest.create,
    "gateway": gateway.create,
    "worker": worker.create,
    "analytics": analytics.create,
}
STARTUP_TIMEOUT_S = 60.0


def probes_for(admin: Admin, settings: Settings, names: list[str]) -> list[Probe]:
    """Kafka for every process (first); the workers' group where jobs are taken in."""
    expected = {s.name for s in topic_specs(settings)}
    probes = [Probe("kafka", kafka_answers(admin, expected), renew=admin.renew)]
    if "ingest" in names:
        group = workers_in_group(admin, settings.worker_group)
        probes.append(Probe("workers", group, interval_s=2.0, renew=admin.renew))
    return probes


def tenancy_part(rt: Runtime) -> ServicePart:
    """Every process follows the tenants' policies, the run-time keys and the spend."""
    follower = TenancyFollower(rt.settings, rt.clients, rt.tenants, rt.keys, rt.spend, rt.breakdown)

    async def ready() -> str | None:
        return follower.ready_reason()

    return ServicePart(name="tenancy", start=follower.start, stop=follower.stop, checks=[ready])


async def _ensure_topics_with_retry(settings: Settings, stop_asked: Callable[[], bool]) -> None:
    """Wait for Kafka (``STARTUP_TIMEOUT_S`` at most) and create the topics; give up at once
    when the process is asked to stop meanwhile (SIGTERM during a long wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT_S
    while True:
        try:
            await ensure_topics(settings)
            return
        except KafkaError as exc:
            if loop.time() > deadline or stop_asked():
                raise
            log.warning("waiting for kafka at %s: %s", settings.kafka_bootstrap, exc)
            await asyncio.sleep(1.0)
            if stop_asked():
                raise


def _lifespan(
    rt: Runtime, parts: list[ServicePart], probes: list[Probe], names: list[str]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Topics, probes and the producer first; the parts in order; all stopped in reverse."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _ensure_topics_with_retry(
            rt.settings, lambda: getattr(app.state, "stop_asked", False)
        )
        for probe in probes:
            probe.start(rt.breakdown)
        rt.producer.start()
        started: list[ServicePart] = []
        try:
            for part in parts:
                if part.start is not None:
                    await part.start()
                started.append(part)
            log.info("serving %s", ", ".join(names))
            yield
        finally:
            for part in reversed(started):
                if part.stop is not None:
                    await part.stop()
            await rt.producer.close()
            await rt.state.close()
            for probe in probes:
                await probe.stop()
            tracing.shutdown()

    return lifespan


def build_app(settings: Settings, names: list[str]) -> FastAPI:
    unknown = [n for n in names if n not in SERVICES]
    if unknown or not names:
        raise ConfigError(f"services are {', '.join(SERVICES)}; got {', '.join(names) or 'none'}")
    clients = KafkaClients.of(settings)
    admin = clients.admin()
    probes = probes_for(admin, settings, names)
    keys = KeyRing()
    rt = Runtime(
        settings=settings,
        clients=clients,
        producer=clients.producer(**{"client.id": settings.worker_id}),
        admin=admin,
        access=Access(settings, keys),
        keys=keys,
        state=StateClient(settings.aggregator_url),
        prices=load_prices(settings.prices),
        kafka=probes[0],
    )
    parts = [tenancy_part(rt), *(SERVICES[n](rt) for n in names)]
    if "analytics" not in names and settings.analytics_url and {"ingest", "gateway"} & set(names):
        parts.append(analytics_forward.create(rt))

    lifespan = _lifespan(rt, parts, probes, names)
    app = FastAPI(
        title="tokenrelay",
        version=version("tokenrelay"),
        description="LLM jobs on Kafka: submit, watch token by token, resume, replay.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's own OpenTelemetry: its HTTP spans only when our traces are exported,
        # nothing per request otherwise (it asked the providers on every request: ~2 % of a
        # submission's time); no spans around each dependency and serialization, no
        # metrics (ours are on /metrics), no log records.
        telemetry={
            "tracing": tracing.wanted(),
            "metrics": False,
            "logs": False,
            "operation_spans": False,
        },
    )
    app.state.drains = [part.drain for part in parts if part.drain is not None]
    app.state.breakdown = rt.breakdown
    install_error_handlers(app)
    openapi.install(app, settings.default_provider)
    for part in parts:
        app.router.routes.extend(part.lean_routes)
    for part in parts:
        if part.router is not None:
            app.include_router(part.router)
    checks: list[ReadinessCheck] = [probe.readiness for probe in probes]
    checks += [c for part in parts for c in part.checks]

    async def not_broken() -> str | None:
        return rt.breakdown.reason

    checks.append(not_broken)
    app.include_router(health_router(checks))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    install_cors(app, settings.cors_origin_list)
    app.add_middleware(AfterResponse)  # the outermost of ours: see its module
    return app


GC_FULL_AFTER_YOUNG = 100
"""Middle-generation collections between two full ones (Python's default: 10)."""


def settle_garbage_collector() -> None:
    """Keep full collections rare and short in a process that holds thousands of streams.

    A full collection stops the event loop for as long as it walks every tracked
    object: 0.25-0.77 s in a gateway with 2,000 streams at 10,000 tokens/s, every
    8-11 s (bench/gateway_fanout.py). What start-up made (modules, the app) lives
    as long as the process, so it is frozen out of every collection; and a full
    collection comes ten times less often. Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_FULL_AFTER_YOUNG)
    gc_pauses.watch_collections()


class DrainingServer(uvicorn.Server):
    """A uvicorn server that ends the parts' long-lived streams before it waits for them.

    uvicorn's shutdown waits for open connections to finish; an event stream
    never does on its own. Ending the streams first lets their clients resume on
    another process at once instead of after ``timeout_graceful_shutdown``.
    """

    def __init__(self, config: uvicorn.Config, *, settle_gc: bool = False) -> None:
        super().__init__(config)
        self._settle_gc = settle_gc
        """Whether this server is its process's reason to be (not a test's background stack)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn does not interrupt a start-up in progress: tell the lifespan, which may
        # be waiting for Kafka, that nobody wants it any more.
        state = getattr(self.config.app, "state", None)
        if state is not None:
            state.stop_asked = True
        super().handle_exit(sig, frame)

    @property
    def broken(self) -> str | None:
        """Why a part of the app stopped for good (``services.core.breakdown``), if one did."""
        breakdown = getattr(getattr(self.config.app, "state", None), "breakdown", None)
        return breakdown.reason if breakdown is not None else None

    async def on_tick(self, counter: int) -> bool:
        if self.broken is not None:
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or []:
            host, port = sock.getsockname()[:2]
            log.info("listening on http://%s:%d", host, port)
        if self._settle_gc:
            settle_garbage_collector()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        for drain in getattr(getattr(app, "state", None), "drains", []):
            await drain()
        await super().shutdown(sockets)


def serve(
    settings: Settings, names: list[str], port: int | None = None, fd: int | None = None
) -> None:
    """Run the composed app until SIGINT or SIGTERM; uvicorn then runs the shutdown.

    ``fd`` is a listening socket handed down by a supervisor (``tokenrelay up``)
    that keeps it open across restarts; otherwise the process binds its port first.
    """
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        sock = listening_socket(settings.http_host, port or settings.http_port)
    tracing.setup(f"tokenrelay-{'-'.join(names)}")
    if "analytics" in names:
        load_chdb(settings.clickhouse_dsn)  # here, on the main thread: it takes signals
    app = build_app(settings, names)
    config = uvicorn.Config(
        app,
        http=LeanHttpToolsProtocol,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = DrainingServer(config, settle_gc=True)
    server.run(sockets=[sock])
    if server.broken is not None:
        raise SystemExit(EXIT_BROKEN)


@contextmanager
def serving_in_thread(
    settings: Settings, names: list[str], port: int, ready_path: str = "/readyz"
) -> Iterator[str]:
    """Serve ``names`` on ``port`` in a background thread until the block ends.

    Yields the base URL once ``ready_path`` answers 200. For tests and benchmarks,
    which drive the stack from the same process.
    """
    config = uvicorn.Config(
        build_app(settings, names),
        host="127.0.0.1",
        port=port,
        http=LeanHttpToolsProtocol,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = DrainingServer(config)
    thread = threading.Thread(target=server.run, name=f"stack-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = ""
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("the stack exited during start")
            try:
                r = httpx.get(base + ready_path, timeout=2)
                if r.status_code == 200:
                    break
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"stack not ready: {last}")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=60)
