"""``tokenrelay up`` (``make up``): a whole stack on one machine, and everything stopped on exit.

Starts the local broker unless ``TOKENRELAY_KAFKA_BOOTSTRAP`` points at one that
answers, then one process for the public face (ingest + gateway) and one worker
process, waits until ``/readyz`` says the stack can take and run a job, prints
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
        root=(settings.data_dir / "kafka").resolve(), host=host, port=port,
        controller_port=port + 1, version=settings.kafka_version, cache_dir=settings.kafka_cache_dir,
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


def up(settings: Settings) -> None:
    started = time.monotonic()
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker: LocalBroker | None = None
    host, port = split_bootstrap(settings.kafka_bootstrap)
    if "TOKENRELAY_KAFKA_BOOTSTRAP" in os.environ and port_open(host, port):
        console.print(f"using Kafka at {settings.kafka_bootstrap}")
    else:
        broker = local_broker(settings)
        with console.status(f"starting Kafka {settings.kafka_version} at {broker.bootstrap} …"):
            broker.start()
        console.print(f"Kafka {settings.kafka_version} running at {broker.bootstrap} (logs: {broker.paths.output})")

    env = {**os.environ, "TOKENRELAY_DATA_DIR": str(data)}
    http_port = settings.http_port
    procs = [
        _spawn(["serve", "ingest", "gateway", "--port", str(http_port)], logs / "public.log", env),
        _spawn(["serve", "worker", "--port", str(http_port + 1)], logs / "worker.log", env),
    ]

    def stop(_sig: int = 0, _frame: FrameType | None = None) -> None:
        console.print("stopping …")
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        if broker is not None:
            broker.stop()
        console.print("stopped")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    base = f"http://{settings.http_host}:{http_port}"
    try:
        _wait_ready(f"{base}/readyz", procs, READY_TIMEOUT_S)
    except SystemExit as exc:
        console.print(f"[red]{exc}[/red]")
        stop()
    key = next(iter(parse_api_keys(settings.api_keys.get_secret_value())))
    console.print(
        f"\n[bold green]tokenrelay is ready[/bold green] in {time.monotonic() - started:.1f}s\n"
        f"  API          {base}/v1/jobs\n"
        f"  health       {base}/readyz   metrics {base}/metrics\n"
        f"  worker       http://{settings.http_host}:{http_port + 1}/readyz\n"
        f"  API key      {key}\n"
        f"  logs         {logs}\n\n"
        f"  try:  .venv/bin/tokenrelay submit \"hello\" --stream\n"
        f"Ctrl-C stops everything.\n"
    )
    while True:
        for p in procs:
            if p.poll() is not None:
                console.print(f"[red]a service exited with {p.returncode}; stopping[/red]")
                stop()
        time.sleep(0.5)
