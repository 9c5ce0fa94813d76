"""How far a tenant's spend goes past its budget when jobs stop at it mid-stream.

``python -m bench.budget_stop``. Uses the broker at ``TOKENRELAY_KAFKA_BOOTSTRAP``
when one answers there, else starts a throwaway local broker; one stack in this
process (ingest, gateway, a worker, analytics on a throwaway chDB), the fake
provider at 500 tokens/s, a price of $0.001 a token in and out. For each
scenario a fresh tenant gets a daily budget of $0.05 and submits jobs of up to
2,000 tokens; the run ends when every job ended and the tenant's spend on
``GET /v1/tenants/{t}/usage`` shows what their terminal events billed. Prints the spend, the
budget, and the overshoot (spend - budget; ≤ 0 is within it):

* ``one job``: a single long job, stopped at the cap;
* ``sequential``: 5 jobs one after another, each submitted as the last ended
  (before its cost reached ``tokenrelay.spend``);
* ``concurrent``: 5 jobs at once on one worker.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.worker_scheduling import broker
from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread

console = Console()
ADMIN = {"Authorization": "Bearer key-admin"}
API_KEYS = "key-admin:ops:admin"
BUDGET = Decimal("0.05")
MODEL = "fake-priced"
JOB = {
    "prompt": "p",
    "model": MODEL,
    "provider": "fake",
    "max_tokens": 2000,
    "provider_options": {"tokens_per_s": 500},
}


async def ended(client: httpx.AsyncClient, key: dict[str, str], job_id: str) -> dict[str, Any]:
    """The job's terminal event, read from its event stream."""
    last: dict[str, Any] = {}
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=key) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                last = json.loads(line[5:])
    return last


async def tenant(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    r = await client.post("/v1/admin/keys", json={"tenant": name}, headers=ADMIN)
    r.raise_for_status()
    body = {"budget_usd_per_day": float(BUDGET)}
    (await client.put(f"/v1/admin/tenants/{name}", json=body, headers=ADMIN)).raise_for_status()
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def submit(client: httpx.AsyncClient, key: dict[str, str]) -> str | None:
    r = await client.post("/v1/jobs", json=JOB, headers=key)
    if r.status_code == 402:
        return None
    r.raise_for_status()
    job_id: str = r.json()["job_id"]
    return job_id


async def recorded_spend(
    client: httpx.AsyncClient, name: str, key: dict[str, str], billed: Decimal
) -> Decimal:
    """The tenant's spend on ``/usage`` (``tokenrelay.spend``) once it shows what the jobs'
    terminal events billed, or whatever it shows after 30 s."""
    give_up = time.monotonic() + 30
    while True:
        usage = (await client.get(f"/v1/tenants/{name}/usage", headers=key)).json()
        shown = Decimal(repr(usage["spent"]["usd_day"]))
        if shown == billed or time.monotonic() > give_up:
            return shown
        await asyncio.sleep(0.2)


async def scenario(base: str, name: str, jobs: int, concurrent: bool) -> tuple[int, Decimal]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        key = await tenant(client, f"{name}-{uuid.uuid4().hex[:6]}")
        tenant_name = (await client.get("/v1/me", headers=key)).json()["tenant"]
        ends: list[dict[str, Any]] = []
        if concurrent:
            ids = [i for i in [await submit(client, key) for _ in range(jobs)] if i]
            ends = list(await asyncio.gather(*(ended(client, key, i) for i in ids)))
        else:
            for _ in range(jobs):
                job_id = await submit(client, key)
                if job_id is None:
                    break
                ends.append(await ended(client, key, job_id))
        billed = sum((Decimal(repr(e.get("cost_usd") or 0.0)) for e in ends), Decimal(0))
        each = ", ".join(f"{e.get('tokens')}" for e in ends)
        console.print(f"  tokens of each job: {each}")
        return len(ends), await recorded_spend(client, tenant_name, key, billed)


def main() -> None:
    defaults = Settings()
    with broker(defaults) as bootstrap, tempfile.TemporaryDirectory() as data:
        prices = Path(data) / "prices.json"
        prices.write_text(json.dumps({"models": {MODEL: {"input": "1000", "output": "1000"}}}))
        run_id = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"bench{run_id}",
            worker_group=f"bench-workers-{run_id}",
            analytics_group=f"bench-analytics-{run_id}",
            clickhouse_url=f"chdb://{Path(data) / 'chdb'}",
            api_keys=API_KEYS,  # type: ignore[arg-type]
            prices=prices,
            data_dir=Path(data),
        )
        names = ["ingest", "gateway", "worker", "analytics"]
        with serving_in_thread(settings, names, free_port()) as base:
            console.print(f"budget ${BUDGET} a day; a token costs $0.001 in or out")
            for label, jobs, concurrent in (
                ("one job", 1, False),
                ("sequential", 5, False),
                ("concurrent", 5, True),
            ):
                ran, spent = asyncio.run(scenario(base, label.split()[0], jobs, concurrent))
                console.print(
                    f"{label:11s} jobs run {ran}   spent ${spent}   overshoot ${spent - BUDGET}"
                )


if __name__ == "__main__":
    main()
