"""``tokenrelay up`` (``make up``): a whole stack on one machine, and everything stopped on exit.

Starts the local broker unless ``TOKENRELAY_KAFKA_BOOTSTRAP`` points at one that
answers, then one process for the public face (ingest + gateway + analytics, which
owns the embedded ClickHouse), ``TOKENRELAY_WORKERS`` worker processes (default one)
and one aggregator (job state). With ``TOKENRELAY_GATEWAYS=N`` above one, the public
face is N processes (``public-1`` … ``public-N``: ingest + gateway, each its own
fan-out) on the one port, each on its own ``SO_REUSEPORT`` socket among which the
kernel spreads connections; analytics then runs alone on the port after the
workers' (the embedded ClickHouse is one process's), and they forward
``/v1/analytics`` to it. ``up``
waits until ``/readyz`` of the public face and of the aggregator say the stack can
take, run and report a job, prints the URLs and the dev API key. A child that
exits is restarted with backoff (``services.localdev.supervisor``), the broker it started
too; a part that keeps crashing stops the stack with its name and log. On
Ctrl-C or SIGTERM it stops what it started, broker included, in reverse order.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from services.core.auth import parse_api_keys
from services.core.settings import Settings
from services.core.sockets import listening_socket
from services.localdev.kafka import LocalCluster, port_open, split_bootstrap, stored_size
from services.localdev.supervisor import Child, CrashLoopError, RestartPolicy, Supervisor

console = Console(stderr=True)
READY_TIMEOUT_S = 120.0


def local_cluster(settings: Settings, nodes: int | None = None) -> LocalCluster:
    """The local Kafka under ``<data dir>/kafka``: ``nodes``, else as many as it was
    started with, else ``TOKENRELAY_KAFKA_BROKERS``."""
    host, port = split_bootstrap(settings.kafka_bootstrap)
    root = (settings.data_dir / "kafka").resolve()
    return LocalCluster(
        root=root,
        host=host,
        port=port,
        nodes=nodes or stored_size(root) or settings.kafka_brokers,
        version=settings.kafka_version,
        cache_dir=settings.kafka_cache_dir,
    )


def _wait_ready(url: str, supervisor: Supervisor, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    with console.status("waiting for the stack to be ready …") as status:
        while time.monotonic() < deadline:
            supervisor.tick()
            try:
                r = httpx.get(url, timeout=2.0)
                if r.status_code == 200:
                    return
                last = ", ".join(r.json().get("reasons", []))
                status.update(f"waiting for the stack: {last}")
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.3)
    raise SystemExit(f"the stack was not ready in {timeout:.0f}s: {last}")


def _broker_unless_configured(settings: Settings) -> LocalCluster | None:
    """The local Kafka we started, or None when TOKENRELAY_KAFKA_BOOTSTRAP answers already."""
    host, port = split_bootstrap(settings.kafka_bootstrap)
    if "TOKENRELAY_KAFKA_BOOTSTRAP" in os.environ and port_open(host, port):
        console.print(f"using Kafka at {settings.kafka_bootstrap}")
        return None
    asked = settings.kafka_brokers if "kafka_brokers" in settings.model_fields_set else None
    cluster = local_cluster(settings, asked)
    nodes = len(cluster.nodes)
    with console.status(f"starting Kafka {settings.kafka_version} ({nodes} nodes) …"):
        cluster.start()
    console.print(
        f"Kafka {settings.kafka_version} at {cluster.bootstrap}, "
        f"replication {cluster.replicas}, logs {cluster.root}/node-*/broker.log"
    )
    return cluster


class BrokerWatch:
    """Starts the nodes of the local Kafka that died, under the children's restart policy."""

    def __init__(self, cluster: LocalCluster | None, policy: RestartPolicy) -> None:
        self.cluster, self.policy = cluster, policy
        self.failures: list[float] = []

    def tick(self) -> None:
        if self.cluster is None:
            return
        down = self.cluster.down()
        if not down:
            return
        now = time.monotonic()
        self.failures.append(now)
        names = ", ".join(f"node {n.node_id} (log {n.paths.output})" for n in down)
        if self.policy.delay(self.failures, now) is None:
            raise CrashLoopError(f"Kafka keeps exiting: {names}")
        console.print(f"Kafka {names} exited; starting it again")
        self.cluster.start()
        console.print(f"Kafka is back at {self.cluster.bootstrap}")


def _banner(settings: Settings, logs: Path, seconds: float) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    key = next(iter(parse_api_keys(settings.api_keys.get_secret_value())))
    return (
        f"\n[bold green]tokenrelay is ready[/bold green] in {seconds:.1f}s\n"
        f"  dashboard    {base}/ui#key={key}\n"
        f"  API          {base}/v1/jobs\n"
        f"  health       {base}/readyz\n"
        f"  metrics      {base}/metrics\n"
        f"  analytics    {base}/v1/analytics/cost  (ClickHouse: {settings.clickhouse_dsn})\n"
        + (
            f"  gateways     {settings.gateways} processes on port {settings.http_port}; "
            f"analytics alone at http://{settings.http_host}:{analytics_port(settings)}/readyz\n"
            if settings.gateways > 1
            else ""
        )
        + "".join(
            f"  {name:<12} http://{settings.http_host}:{p}/readyz\n"
            for name, p in zip(worker_names(settings.workers), worker_ports(settings), strict=True)
        )
        + f"  aggregator   {settings.aggregator_url}/readyz\n"
        f"  API key      {key}\n"
        f"  logs         {logs}\n\n"
        f'  try:  .venv/bin/tokenrelay submit "hello" --stream\n'
        f"        .venv/bin/tokenrelay stats\n"
        f"Ctrl-C stops everything.\n"
    )


def worker_names(count: int) -> list[str]:
    """``worker`` alone, or ``worker-1`` … ``worker-N`` (each a log and a line in the banner)."""
    return ["worker"] if count == 1 else [f"worker-{i}" for i in range(1, count + 1)]


def worker_ports(settings: Settings) -> list[int]:
    """The workers' health ports: right after the public face's."""
    return [settings.http_port + i for i in range(1, settings.workers + 1)]


def public_names(count: int) -> list[str]:
    """``public`` alone, or ``public-1`` … ``public-N`` (each a log)."""
    return ["public"] if count == 1 else [f"public-{i}" for i in range(1, count + 1)]


def analytics_port(settings: Settings) -> int | None:
    """The analytics process's port when it runs alone (several gateways): after the workers'."""
    return settings.http_port + settings.workers + 1 if settings.gateways > 1 else None


def _listen(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A port that ``up`` holds for a child and its restarts; connections made while the
    child restarts wait in the backlog."""
    sock = listening_socket(host, port, shared=shared)
    sock.listen(2048)
    return sock


@dataclass
class HeldPorts:
    """The listening sockets ``up`` holds for its children, bound before anything starts."""

    public: list[socket.socket]
    workers: list[socket.socket]
    analytics: socket.socket | None

    @classmethod
    def bind(cls, settings: Settings) -> HeldPorts:
        host, alone = settings.http_host, analytics_port(settings)
        return cls(
            public=[
                _listen(host, settings.http_port, shared=settings.gateways > 1)
                for _ in range(settings.gateways)
            ],
            workers=[_listen(host, p) for p in worker_ports(settings)],
            analytics=_listen(host, alone) if alone is not None else None,
        )


def children(settings: Settings, env: dict[str, str], logs: Path, ports: HeldPorts) -> list[Child]:
    """Every process of the stack, analytics first when it runs alone (``env`` then tells
    the gateways where it is)."""
    public = ["serve", "ingest", "gateway"]
    alone: list[Child] = []
    if ports.analytics is None:
        public.append("analytics")
    else:
        env["TOKENRELAY_ANALYTICS_URL"] = f"http://{settings.http_host}:{analytics_port(settings)}"
        log = logs / "analytics.log"
        alone.append(Child("analytics", ["serve", "analytics"], log, env, ports.analytics))
    return [
        *alone,
        *(
            Child(name, public, logs / f"{name}.log", env, sock)
            for name, sock in zip(public_names(settings.gateways), ports.public, strict=True)
        ),
        *(
            Child(name, ["serve", "worker"], logs / f"{name}.log", env, sock)
            for name, sock in zip(worker_names(settings.workers), ports.workers, strict=True)
        ),
        Child("aggregator", ["aggregator"], logs / "aggregator.log", env),
    ]


def ready_urls(settings: Settings) -> list[str]:
    """The ``/readyz`` that must all answer 200 before the stack is announced."""
    host = settings.http_host
    alone = analytics_port(settings)
    return [
        *([f"http://{host}:{alone}/readyz"] if alone is not None else []),
        f"http://{host}:{settings.http_port}/readyz",
        f"{settings.aggregator_url}/readyz",
    ]


def up(settings: Settings) -> None:
    started = time.monotonic()
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # The ports first: one that is taken stops ``up`` before it starts a broker.
    ports = HeldPorts.bind(settings)
    broker = _broker_unless_configured(settings)
    env = {
        **os.environ,
        "TOKENRELAY_DATA_DIR": str(data),
        "TOKENRELAY_KAFKA_BOOTSTRAP": broker.bootstrap if broker else settings.kafka_bootstrap,
    }
    if broker is not None:
        env.setdefault("TOKENRELAY_REPLICATION_FACTOR", str(broker.replicas))
    supervisor = Supervisor(children(settings, env, logs, ports), say=console.print)
    kafka = BrokerWatch(broker, supervisor.policy)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Set, not inherited: a shell's background job starts with SIGINT ignored, and Python
    # then keeps it so; a Ctrl-C to the group would stop the parts (uvicorn and Faust stop
    # on it) and this loop would start them again, for ever.
    signal.signal(signal.SIGINT, on_signal)
    failed: CrashLoopError | None = None
    try:
        supervisor.start()
        for url in ready_urls(settings):
            _wait_ready(url, supervisor, READY_TIMEOUT_S)
        console.print(_banner(settings, logs, time.monotonic() - started))
        while True:
            supervisor.tick()
            kafka.tick()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except CrashLoopError as exc:
        failed = exc
        console.print(f"[red]{exc}: stopping the stack[/red]")
    except SystemExit as exc:
        console.print(f"[red]{exc}[/red]")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        console.print("stopping …")
        supervisor.stop_all()
        if broker is not None:
            broker.stop()
        console.print("stopped")
    if failed is not None:
        raise SystemExit(1)
