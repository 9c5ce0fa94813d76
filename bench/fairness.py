"""Fairness across tenants: how long tenant B waits with and without tenant A's flood.

``python -m bench.fairness``. Uses the broker at ``TOKENRELAY_KAFKA_BOOTSTRAP``
when one answers there, else starts a throwaway local broker. Each run gets a
fresh stack (ingest and a worker with concurrency 4, the fake provider, its own
topics): tenant A (alice) submits 120 ``low`` jobs of one second each, and once
they fill the slots tenant B (bob) submits 4 more; the run ends when bob's have
all started. Prints bob's queue wait (submission → ``started``), p50 and max:

* ``alone``: no flood, bob's jobs on an idle worker;
* ``flood``: behind alice's 120 jobs (30 s of her work for 4 slots);
* ``flood, tenant-blind`` (``--blind``): the same with every job counted as one
  tenant and no read-ahead — the FIFO the worker ran before fair queuing.

The scenario is ``tests/integration/test_fairness.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from bench.worker_scheduling import broker
from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread
from services.worker import scheduling
from tests.conftest import API_KEYS
from tests.integration.test_fairness import CONCURRENCY, FEW, FLOOD, JOB_S, bob_behind_alice

console = Console()


@contextmanager
def tenant_blind() -> Iterator[None]:
    """Every job pushed as tenant "": the ready queue is one FIFO per priority again."""
    push = scheduling.ReadyQueue.push

    def blind(self: scheduling.ReadyQueue[object], item: object, *args: object) -> None:
        push(self, item, *args[:2], "")  # type: ignore[arg-type]

    scheduling.ReadyQueue.push = blind  # type: ignore[method-assign]
    try:
        yield
    finally:
        scheduling.ReadyQueue.push = push  # type: ignore[method-assign]


def run(bootstrap: str, *, flood: int, readahead: int) -> list[float]:
    with tempfile.TemporaryDirectory() as data:
        run_id = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"bench{run_id}",
            worker_group=f"bench-workers-{run_id}",
            worker_concurrency=CONCURRENCY,
            worker_readahead=readahead,
            worker_grace_s=0.5,
            api_keys=API_KEYS,  # type: ignore[arg-type]
            data_dir=Path(data),
        )
        with serving_in_thread(settings, ["ingest", "worker"], free_port()) as base:
            waits = asyncio.run(bob_behind_alice(base, settings, flood=flood))
    return waits.bob_ms


def report(name: str, waits: list[float]) -> None:
    console.print(
        f"{name:22s} bob's wait p50 {statistics.median(waits):7.0f} ms   "
        f"max {max(waits):7.0f} ms   (n={len(waits)})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blind", action="store_true", help="also run tenant-blind FIFO")
    args = parser.parse_args(argv)
    defaults = Settings()
    console.print(
        f"fairness: concurrency {CONCURRENCY}, jobs of {JOB_S:.0f} s, "
        f"alice {FLOOD} low jobs, bob {FEW}"
    )
    with broker(defaults) as bootstrap:
        report("alone", run(bootstrap, flood=0, readahead=defaults.worker_readahead))
        report("flood", run(bootstrap, flood=FLOOD, readahead=defaults.worker_readahead))
        if args.blind:
            with tenant_blind():
                report("flood, tenant-blind", run(bootstrap, flood=FLOOD, readahead=0))


if __name__ == "__main__":
    main()
