"""How soon a key made on one process works on another, and a revoked one is refused there.

``python -m bench.key_propagation``. Uses the broker at ``TOKENRELAY_KAFKA_BOOTSTRAP``
when one answers there, else starts a throwaway local broker. Two public faces
(ingest and gateway) in this process share the topics, each following
``tokenrelay.keys`` on its own. 20 times: make a key on A (the answer comes once A
has read it back), poll B's ``/v1/me`` with it until 200; revoke it on B, poll A
until 401. Prints p50 and max of both waits.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console

from bench.worker_scheduling import broker
from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread

console = Console()
ADMIN = {"Authorization": "Bearer key-admin"}
ROUNDS = 20


def until(client: httpx.Client, key: str, status: int) -> float:
    """Seconds until ``GET /v1/me`` with ``key`` answers ``status``."""
    t0 = time.monotonic()
    while client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code != status:
        if time.monotonic() - t0 > 30:
            raise TimeoutError(f"no {status} in 30 s")
        time.sleep(0.002)
    return time.monotonic() - t0


def report(what: str, waits: list[float]) -> None:
    console.print(
        f"{what:28s} p50 {statistics.median(waits) * 1000:5.0f} ms   "
        f"max {max(waits) * 1000:5.0f} ms   (n={len(waits)})"
    )


def main() -> None:
    defaults = Settings()
    with broker(defaults) as bootstrap, tempfile.TemporaryDirectory() as data:
        run = uuid.uuid4().hex[:8]
        a_settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"keys{run}",
            worker_group=f"keys-workers-{run}",
            api_keys="key-admin:ops:admin",  # type: ignore[arg-type]
            data_dir=Path(data) / "a",
        )
        b_settings = a_settings.model_copy(
            update={"worker_id": f"{a_settings.worker_id}-b", "data_dir": Path(data) / "b"}
        )
        names = ["ingest", "gateway"]  # no worker: ready on /healthz
        with (
            serving_in_thread(a_settings, names, free_port(), "/healthz") as a_url,
            serving_in_thread(b_settings, names, free_port(), "/healthz") as b_url,
            httpx.Client(base_url=a_url, timeout=30) as a,
            httpx.Client(base_url=b_url, timeout=30) as b,
        ):
            made, revoked = [], []
            for n in range(ROUNDS):
                r = a.post("/v1/admin/keys", json={"tenant": f"t{n}"}, headers=ADMIN)
                r.raise_for_status()
                key, key_id = r.json()["key"], r.json()["id"]
                made.append(until(b, key, 200))
                b.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN).raise_for_status()
                revoked.append(until(a, key, 401))
            report("made on A, works on B", made)
            report("revoked on B, refused on A", revoked)


if __name__ == "__main__":
    main()
