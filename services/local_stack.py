"""``tokenrelay up`` (``make up``): a whole stack on one machine, and everything stopped on exit.

Starts the local broker unless ``TOKENRELAY_KAFKA_BOOTSTRAP`` points at one that
answers, then one process for the public face (ingest + gateway + analytics, which
owns the embedded ClickHouse), one worker process and one aggregator (job state),
waits until ``/readyz`` of the public face and of the aggregator say the stack can
take, run and report a job, prints the URLs and the dev API key. A child that
exits is restarted with backoff (``services.supervisor``), the broker it started
too; a part that keeps crashing stops the stack with its name and log. On
Ctrl-C or SIGTERM it stops what it started, broker included, in reverse order.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from services.core.auth import parse_api_keys
from services.core.local_kafka import LocalBroker, port_open, split_bootstrap
from services.core.settings import Settings
from services.supervisor import Child, CrashLoopError, RestartPolicy, Supervisor

console = Console(stderr=True)
READY_TIMEOUT_S = 120.0


def local_broker(settings: Settings) -> LocalBroker:
    host, port = split_bootstrap(settings.kafka_bootstrap)
    return LocalBroker(
        root=(settings.data_dir / "kafka").resolve(),
        host=host,
        port=port,
        controller_port=port + 1,
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


def _broker_unless_configured(settings: Settings) -> LocalBroker | None:
    """The local broker we started, or None when TOKENRELAY_KAFKA_BOOTSTRAP answers already."""
    host, port = split_bootstrap(settings.kafka_bootstrap)
    if "TOKENRELAY_KAFKA_BOOTSTRAP" in os.environ and port_open(host, port):
        console.print(f"using Kafka at {settings.kafka_bootstrap}")
        return None
    broker = local_broker(settings)
    with console.status(f"starting Kafka {settings.kafka_version} at {broker.bootstrap} …"):
        broker.start()
    console.print(
        f"Kafka {settings.kafka_version} at {broker.bootstrap}, log {broker.paths.output}"
    )
    return broker


class BrokerWatch:
    """Starts the local broker again when it dies, under the children's restart policy."""

    def __init__(self, broker: LocalBroker | None, policy: RestartPolicy) -> None:
        self.broker, self.policy = broker, policy
        self.failures: list[float] = []

    def tick(self) -> None:
        if self.broker is None or self.broker.running_pid() is not None:
            return
        now = time.monotonic()
        self.failures.append(now)
        if self.policy.delay(self.failures, now) is None:
            raise CrashLoopError(f"the Kafka broker keeps exiting; see {self.broker.paths.output}")
        log_path = self.broker.paths.output
        console.print(f"the Kafka broker exited; starting it again (log {log_path})")
        self.broker.start()
        console.print(f"Kafka is back at {self.broker.bootstrap}")


def _banner(settings: Settings, logs: Path, seconds: float) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    key = next(iter(parse_api_keys(settings.api_keys.get_secret_value())))
    return (
        f"\n[bold green]tokenrelay is ready[/bold green] in {seconds:.1f}s\n"
        f"  API          {base}/v1/jobs\n"
        f"  health       {base}/readyz\n"
        f"  metrics      {base}/metrics\n"
        f"  analytics    {base}/v1/analytics/cost  (ClickHouse: {settings.clickhouse_dsn})\n"
        f"  worker       http://{settings.http_host}:{settings.http_port + 1}/readyz\n"
        f"  aggregator   {settings.aggregator_url}/readyz\n"
        f"  API key      {key}\n"
        f"  logs         {logs}\n\n"
        f'  try:  .venv/bin/tokenrelay submit "hello" --stream\n'
        f"        .venv/bin/tokenrelay stats\n"
        f"Ctrl-C stops everything.\n"
    )


def up(settings: Settings) -> None:
    started = time.monotonic()
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker = _broker_unless_configured(settings)
    env = {
        **os.environ,
        "TOKENRELAY_DATA_DIR": str(data),
        "TOKENRELAY_KAFKA_BOOTSTRAP": broker.bootstrap if broker else settings.kafka_bootstrap,
    }
    port = settings.http_port
    public = ["serve", "ingest", "gateway", "analytics", "--port", str(port)]
    supervisor = Supervisor(
        [
            Child("public", public, logs / "public.log", env),
            Child("worker", ["serve", "worker", "--port", str(port + 1)], logs / "worker.log", env),
            Child("aggregator", ["aggregator"], logs / "aggregator.log", env),
        ],
        say=console.print,
    )
    kafka = BrokerWatch(broker, supervisor.policy)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    failed: CrashLoopError | None = None
    try:
        supervisor.start()
        _wait_ready(f"http://{settings.http_host}:{port}/readyz", supervisor, READY_TIMEOUT_S)
        _wait_ready(f"{settings.aggregator_url}/readyz", supervisor, READY_TIMEOUT_S)
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
