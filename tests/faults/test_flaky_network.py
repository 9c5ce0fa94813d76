"""A slow, thin and then cut network between every service and the broker (toxiproxy).

The broker advertises the proxy's address, so every Kafka connection of every
part goes through it. Three scenarios run on one stack, one after another:
200 ms of latency each way, a 32 KB/s cap on what the broker sends, and every
connection cut mid-stream for eight seconds. In each, the jobs submitted end
exactly once, their watchers get them whole, every part is ready once the
network is whole again, and no service restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import LocalBroker, free_port, throwaway_broker
from tests.support.aggregators import with_aggregator_port
from tests.support.faults import (
    WatchedJobs,
    every_job_ended,
    seconds_until,
    still_running,
    three_parts,
)
from tests.support.sse import SseEvent
from tests.support.toxiproxy import Toxiproxy, toxiproxy

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

JOBS = 4
TOKENS = 60
CUT_S = 8.0


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, Toxiproxy, str]]:
    """A broker behind a toxiproxy proxy named ``kafka``; yields it, the proxy, the bootstrap."""
    front = free_port()
    with toxiproxy(tmp_path) as proxy:
        broker = throwaway_broker(tmp_path / "kafka", Settings(), advertised_port=front)
        proxy.proxy("kafka", front, broker.bootstrap)
        broker.start()
        try:
            yield broker, proxy, f"127.0.0.1:{front}"
        finally:
            broker.stop()


@pytest.mark.timeout(600)
async def test_latency_bandwidth_and_a_cut_lose_nothing(
    make_settings: Callable[..., Settings],
    proxied_broker: tuple[LocalBroker, Toxiproxy, str],
    tmp_path: Path,
) -> None:
    _, proxy, bootstrap = proxied_broker
    settings = with_aggregator_port(
        make_settings(kafka_bootstrap=bootstrap, worker_session_timeout_ms=6000)
    )
    figures: dict[str, str] = {}
    with three_parts(settings, tmp_path) as parts:
        pids = {name: child.proc.pid for name, child in parts.items()}
        async with httpx.AsyncClient(base_url=parts["public"].url, timeout=60) as client:
            scenarios: dict[str, tuple[list[tuple[str, str, dict[str, int]]], bool]] = {
                "latency 200 ms": (
                    [
                        ("latency", "upstream", {"latency": 200}),
                        ("latency", "downstream", {"latency": 200}),
                    ],
                    False,
                ),
                "bandwidth 32 KB/s": ([("bandwidth", "downstream", {"rate": 32})], False),
                f"cut {CUT_S:.0f}s mid-stream": ([], True),
            }
            done: list[tuple[str, WatchedJobs, list[list[SseEvent]]]] = []
            for name, (toxics, cut) in scenarios.items():
                added = [proxy.add("kafka", t, stream, **attrs) for t, stream, attrs in toxics]
                jobs = WatchedJobs(client, TOKENS)
                t0 = time.monotonic()
                await jobs.submit(JOBS, tokens_per_s=20)
                submit_s = (time.monotonic() - t0) / JOBS
                await jobs.streaming(timeout=90)
                back: dict[str, float] = {}
                if cut:
                    proxy.enabled("kafka", False)
                    await asyncio.sleep(CUT_S)  # the outage itself: its length is the scenario
                    proxy.enabled("kafka", True)
                    back = await seconds_until(client, parts, 200, timeout=90)
                watched = await jobs.watched(timeout=150)
                took = time.monotonic() - t0
                for toxic in added:
                    proxy.remove("kafka", toxic)
                ready = await seconds_until(client, parts, 200, timeout=60)
                done.append((name, jobs, watched))
                figures[name] = (
                    f"submit {submit_s * 1000:.0f} ms/job, all {JOBS} ended in {took:.1f}s, "
                    f"watchers resumed {len(jobs.reconnects)}x"
                    + (f", readyz 200 after the cut {back}" if cut else f", ready {ready}")
                )

        ids = [j for _, jobs, _ in done for j in jobs.ids]
        events = await every_job_ended(bootstrap, settings, ids)
        still_running(parts, pids)

    for name, jobs, watched in done:
        attempts = jobs.check(events, watched)
        figures[name] += f", attempts {dict(attempts)}, lost 0, twice 0"
    print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
