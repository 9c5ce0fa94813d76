"""Worker scheduling under saturation: queue wait of urgent vs low jobs, and cancel latency.

``python -m bench.worker_scheduling`` (or ``make bench``). Uses the broker at
``TOKENRELAY_KAFKA_BOOTSTRAP`` when one answers there, else starts a throwaway
local broker. One process serves ingest, gateway and a worker with concurrency 4.

* Saturation: 48 low jobs of 0.5 s each (six seconds of work for four slots),
  then 12 urgent jobs, one every 250 ms. Prints p50/p95 of ``queue_wait_ms``
  (submission → ``started``) per priority.
* Cancel: 10 long jobs, each cancelled after its third token; prints the time
  from the cancel's 202 to ``cancelled`` on the job's SSE stream.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console

from schemas.events import JobEvent
from services.core.kafka import Consumer
from services.core.serde import decode_event
from services.core.settings import Settings
from services.localdev.kafka import free_port, port_open, split_bootstrap, throwaway_broker
from services.serve import serving_in_thread

console = Console()
KEY = {"Authorization": "Bearer bench-key"}
LOW_JOBS, URGENT_JOBS = 48, 12
SLOW = {"max_tokens": 10, "provider_options": {"tokens_per_s": 20}}
LONG = {"max_tokens": 2000, "provider_options": {"tokens_per_s": 50}}


@contextmanager
def broker(defaults: Settings) -> Iterator[str]:
    if port_open(*split_bootstrap(defaults.kafka_bootstrap)):
        console.print(f"using the broker at {defaults.kafka_bootstrap}")
        yield defaults.kafka_bootstrap
        return
    with tempfile.TemporaryDirectory() as root:
        local = throwaway_broker(Path(root), defaults)
        console.print("starting a throwaway broker …")
        local.start()
        try:
            yield local.bootstrap
        finally:
            local.stop()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def submit(client: httpx.AsyncClient, **body: object) -> str:
    r = await client.post("/v1/jobs", json={"prompt": "bench", **body}, headers=KEY)
    r.raise_for_status()
    job_id: str = r.json()["job_id"]
    return job_id


async def started_events(settings: Settings, count: int) -> list[JobEvent]:
    """Read ``tokens`` from the start until ``count`` jobs completed; their ``started`` events."""
    t = settings.topics
    async with Consumer(settings.kafka_bootstrap, f"bench-{uuid.uuid4().hex}") as c:
        await c.assign([(t.tokens, p, 0) for p in range(settings.topic_partitions)])
        events: list[JobEvent] = []
        deadline = time.monotonic() + 120
        while sum(e.type == "completed" for e in events) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("jobs did not complete within 120 s")
            events += [decode_event(r.value) for r in await c.poll(500, 0.2)]
    return [e for e in events if e.type == "started"]


async def saturation(base: str, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        lows = {await submit(client, priority="low", **SLOW) for _ in range(LOW_JOBS)}
        console.print(f"submitted {LOW_JOBS} low jobs; now {URGENT_JOBS} urgent, one per 250 ms")
        for _ in range(URGENT_JOBS):
            await submit(client, priority="urgent", **SLOW)
            await asyncio.sleep(0.25)
    started = await started_events(settings, LOW_JOBS + URGENT_JOBS)
    low = [e.queue_wait_ms for e in started if e.job_id in lows]
    urgent = [e.queue_wait_ms for e in started if e.job_id not in lows]
    for name, waits in (("urgent", urgent), ("low", low)):
        console.print(
            f"queue wait {name:6s} p50 {pct(waits, 50):7.0f} ms   p95 {pct(waits, 95):7.0f} ms"
            f"   (n={len(waits)})"
        )


async def cancel_latency(base: str) -> None:
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(10):
            job_id = await submit(client, **LONG)
            tokens, sent = 0, 0.0
            async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=KEY) as resp:
                async for line in resp.aiter_lines():
                    if line == "event: token":
                        tokens += 1
                        if tokens == 3:
                            r = await client.post(f"/v1/jobs/{job_id}/cancel", headers=KEY)
                            r.raise_for_status()
                            sent = time.monotonic()
                    elif line == "event: cancelled":
                        latencies.append((time.monotonic() - sent) * 1000)
                        break
    console.print(
        f"cancel → cancelled on SSE   p50 {pct(latencies, 50):5.0f} ms   "
        f"p95 {pct(latencies, 95):5.0f} ms   max {max(latencies):5.0f} ms   (n={len(latencies)})"
    )


def main() -> None:
    defaults = Settings()
    with broker(defaults) as bootstrap, tempfile.TemporaryDirectory() as data:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            worker_group=f"bench-workers-{uuid.uuid4().hex[:8]}",
            worker_concurrency=4,
            api_keys="bench-key:bench:admin",  # type: ignore[arg-type]
            data_dir=Path(data),
        )
        console.print("worker scheduling: concurrency 4, fake provider")
        with serving_in_thread(settings, ["ingest", "gateway", "worker"], free_port()) as base:
            asyncio.run(saturation(base, settings))
            asyncio.run(cancel_latency(base))


if __name__ == "__main__":
    main()
