"""``tokenrelay up`` (``make up``): a whole stack on one machine, and everything stopped on exit.

Starts the local broker unless ``TOKENRELAY_KAFKA_BOOTSTRAP`` points at one that
answers, then one process for the public face (ingest + gateway + analytics, which
owns the embedded ClickHouse), one worker process and one aggregator (job state),
waits until ``/readyz`` of the public face and of the aggregator say the stack can
take, run and report a job, prints
the URLs and the dev API key, and on Ctrl-C or SIGTERM stops what it started,
broker included, in reverse order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from services.core.auth import parse_api_keys
from services.core.local_kafka import LocalBroker, port_open, split_bootstrap
from services.core.settings import Settings

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


def _spawn(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = log_path.open("ab")
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "services.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=env
    )


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    with console.status("waiting for the stack to be ready …") as status:
        while time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a service exited with {p.returncode}; see the logs")
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


def _stop_all(procs: list[subprocess.Popen[bytes]], broker: LocalBroker | None) -> None:
    console.print("stopping …")
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if broker is not None:
        broker.stop()
    console.print("stopped")


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
    procs = [
        _spawn(
            ["serve", "ingest", "gateway", "analytics", "--port", str(port)],
            logs / "public.log",
            env,
        ),
        _spawn(["serve", "worker", "--port", str(port + 1)], logs / "worker.log", env),
        _spawn(["aggregator"], logs / "aggregator.log", env),
    ]

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        _wait_ready(f"http://{settings.http_host}:{port}/readyz", procs, READY_TIMEOUT_S)
        _wait_ready(f"{settings.aggregator_url}/readyz", procs, READY_TIMEOUT_S)
        console.print(_banner(settings, logs, time.monotonic() - started))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        console.print("[red]a service exited; see its log[/red]")
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        console.print(f"[red]{exc}[/red]")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_all(procs, broker)
