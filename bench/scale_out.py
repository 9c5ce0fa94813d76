"""How throughput grows with processes: ``tokenrelay up`` with 1 and 2 workers and gateways.

For each shape (``TOKENRELAY_WORKERS`` x ``TOKENRELAY_GATEWAYS``) this starts the
stack exactly as ``make up`` does — its own throwaway broker, a temp data dir, the
aggregator and analytics — waits until it says it is ready, runs ``tokenrelay bench
<scenario> --url … --no-baseline --json`` against it for each scenario, stops it, and
prints one table: tokens/s, token latency p50/p99, CPU per token.

    python -m bench.scale_out                       # max and steady, 1x1 2x1 1x2 2x2
    python -m bench.scale_out --shapes 1x1,2x2 --scenarios max

It measures the path users run (``make up``), on this machine; docs/performance.md
("Scaling out") has the figures and what they mean beyond two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from services.localdev.kafka import free_port, free_ports_after

API_KEY = "bench-key"
READY_S = 180.0
STOP_S = 180.0
console = Console(stderr=True)


def start_up(workers: int, gateways: int, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``tokenrelay up`` with that shape; its base URL once it said it is ready."""
    port = free_ports_after(workers + 1)
    env = {
        **os.environ,
        "TOKENRELAY_WORKERS": str(workers),
        "TOKENRELAY_GATEWAYS": str(gateways),
        "TOKENRELAY_HTTP_PORT": str(port),
        "TOKENRELAY_AGGREGATOR_PORT": str(free_port()),
        "TOKENRELAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TOKENRELAY_DATA_DIR": str(data),
        "TOKENRELAY_API_KEYS": f"{API_KEY}:bench:admin",
        "TOKENRELAY_WORKER_CONCURRENCY": "400",
        "TOKENRELAY_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    env["TOKENRELAY_AGGREGATOR_URL"] = f"http://127.0.0.1:{env['TOKENRELAY_AGGREGATOR_PORT']}"
    out = (data / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        stdout=out,
        stderr=out,
        start_new_session=True,  # its children too can be killed as one group, if need be
    )
    deadline = time.monotonic() + READY_S
    while "tokenrelay is ready" not in (data / "up.out").read_text(errors="replace"):
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            raise RuntimeError(f"up did not start: {(data / 'up.out').read_text()[-3000:]}")
        time.sleep(0.5)
    base = f"http://127.0.0.1:{port}"
    httpx.get(f"{base}/readyz", timeout=10).raise_for_status()
    return up, base


def stop_up(up: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a terminal would send it to the whole group; SIGKILL to the group if
    the stack is not down in ``STOP_S``."""
    os.killpg(up.pid, signal.SIGINT)
    try:
        up.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        console.print(f"[red]up not stopped in {STOP_S:.0f} s: killing its group[/red]")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(up.pid, signal.SIGKILL)
    up.wait()


def run_bench(scenario: str, base: str) -> dict[str, object]:
    args = ["bench", scenario, "--url", base, "--api-key", API_KEY, "--no-baseline", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="1x1,2x1,1x2,2x2", help="workers x gateways, ...")
    parser.add_argument("--scenarios", default="max,steady")
    opts = parser.parse_args(argv)
    table = Table(title="tokenrelay up: workers x gateways")
    for col in ("workers", "gateways", "scenario", "tokens/s", "p50 ms", "p99 ms", "ms CPU/token"):
        table.add_column(col, justify="right")
    rows: list[dict[str, object]] = []
    for shape in opts.shapes.split(","):
        workers, gateways = (int(n) for n in shape.split("x"))
        with tempfile.TemporaryDirectory(prefix="tr-scale-") as tmp:
            console.print(f"starting up: {workers} workers, {gateways} gateways …")
            up, base = start_up(workers, gateways, Path(tmp))
            try:
                for scenario in opts.scenarios.split(","):
                    console.print(f"  {scenario} …")
                    r = run_bench(scenario, base)
                    lat = r.get("token_latency_ms") or {}
                    assert isinstance(lat, dict)
                    row = {
                        "workers": workers,
                        "gateways": gateways,
                        "scenario": scenario,
                        "tokens_per_s": r.get("tokens_per_s"),
                        "p50_ms": lat.get("p50"),
                        "p99_ms": lat.get("p99"),
                        "cpu_ms_per_token": r.get("cpu_ms_per_token"),
                    }
                    rows.append(row)
                    table.add_row(*(str(v) for v in row.values()))
            finally:
                stop_up(up)
    Console().print(table)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
