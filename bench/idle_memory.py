"""Where the memory of an idle SSE stream goes: tracemalloc over N idle streams.

``python -m bench.idle_memory [--streams 1000] [--rss]`` serves ``ingest gateway`` in
this process (uvicorn in a thread, as ``serving_in_thread`` does) on a throwaway broker
(or ``TOKENRELAY_KAFKA_BOOTSTRAP``), submits jobs that nobody runs (no worker: each
stream sees ``queued``, then only heartbeats), opens ``--warmup`` streams (they fill the
pools a first stream creates), then ``--streams`` more from a client process, and
reports what the last ones added:

* by default, tracemalloc: bytes per stream grouped by traceback (the frames in our
  code, uvicorn, Starlette, FastAPI and asyncio shown), and by file;
* ``--rss``: the growth of the process's resident memory per stream, without
  tracemalloc (what ``tokenrelay bench fanout --idle`` measures, without live load).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import tracemalloc
import uuid
from collections import defaultdict
from pathlib import Path

import httpx

from bench import sse_clients
from bench.processes import Remote, rss_kb
from bench.worker_scheduling import broker
from services.core.settings import Settings
from services.localdev.kafka import free_port
from services.serve import serving_in_thread

API_KEY = "bench-key"
KEEP = ("tokenrelay", "services/", "uvicorn", "starlette", "fastapi", "asyncio", "uvloop")
"""Frames worth showing in a traceback (the rest is the interpreter's plumbing)."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.idle_memory", description=__doc__)
    p.add_argument("--streams", type=int, default=1000, help="idle streams measured")
    p.add_argument("--warmup", type=int, default=100, help="idle streams opened before")
    p.add_argument("--rss", action="store_true", help="RSS per stream, no tracemalloc")
    p.add_argument("--top", type=int, default=25, help="tracebacks shown")
    p.add_argument("--frames", type=int, default=40, help="frames kept per allocation")
    return p.parse_args()


def submit(base: str, count: int) -> list[str]:
    """``count`` queued jobs (in batches of 1,000): nobody runs them."""
    ids: list[str] = []
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, timeout=60) as client:
        for start in range(0, count, 1000):
            jobs = [
                {"provider": "fake", "prompt": f"idle {i}", "max_tokens": 10}
                for i in range(start, min(count, start + 1000))
            ]
            r = client.post("/v1/batches", json={"jobs": jobs}, headers=auth)
            r.raise_for_status()
            ids += r.json()["job_ids"]
    return ids


def open_streams(clients: Remote, ids: list[str]) -> None:
    opened = clients.call("open", ids, "queued", 200, timeout=600)
    if opened["failed"]:
        raise RuntimeError(f"{opened['failed']} streams did not open: {opened['errors']}")


def settle() -> None:
    """Let the server's loop finish what the last opens started; collect garbage."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.2)


def shown(tb: tracemalloc.Traceback) -> list[str]:
    frames = [f for f in tb if any(k in f.filename for k in KEEP)] or list(tb)[-3:]
    return [f"{short(f.filename)}:{f.lineno}" for f in frames]


def short(filename: str) -> str:
    for mark in ("site-packages/", "/work/main/", "python3.11/"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return filename


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int) -> None:
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"\ntracemalloc: {total / n / 1024:.2f} KB per stream over {n} streams\n")
    by_file: dict[str, int] = defaultdict(int)
    by_frame: dict[str, int] = defaultdict(int)
    for s in stats:
        frames = shown(s.traceback)
        by_file[short(s.traceback[-1].filename)] += s.size_diff
        # The allocation's outermost frame in a package of ours or the server's.
        key = next((f for f in frames if "services/" in f), frames[0] if frames else "?")
        by_frame[key] += s.size_diff
    print("by file of the allocation (B per stream):")
    for name, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {size / n:8.0f}  {name}")
    print("\nby first frame in services/ (else the outermost shown; B per stream):")
    for name, size in sorted(by_frame.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {size / n:8.0f}  {name}")
    print(f"\ntop {top} tracebacks (B per stream, blocks per stream):")
    for s in stats[:top]:
        where = " <- ".join(reversed(shown(s.traceback)))[:900]
        print(f"  {s.size_diff / n:8.0f}  {s.count_diff / n:5.1f}  {where}")


def main() -> None:
    args = parse_args()
    with broker(Settings()) as bootstrap, tempfile.TemporaryDirectory(prefix="tr-idle-") as data:
        tag = uuid.uuid4().hex[:8]
        os.environ.update(
            {
                "TOKENRELAY_KAFKA_BOOTSTRAP": bootstrap,
                "TOKENRELAY_TOPIC_PREFIX": f"idle{tag}",
                "TOKENRELAY_WORKER_GROUP": f"idle-workers-{tag}",
                "TOKENRELAY_API_KEYS": f"{API_KEY}:bench:admin",
                "TOKENRELAY_DATA_DIR": str(Path(data)),
                "TOKENRELAY_LOG_LEVEL": "WARNING",
                "TOKENRELAY_BATCH_MAX_JOBS": "100000",
            }
        )
        port = free_port()
        with serving_in_thread(Settings(), ["ingest", "gateway"], port, "/healthz") as base:
            ids = submit(base, args.warmup + args.streams)
            clients = Remote("sse-clients", sse_clients.run, "127.0.0.1", port, API_KEY)
            try:
                open_streams(clients, ids[: args.warmup])
                settle()
                if args.frames and not args.rss:
                    tracemalloc.start(args.frames)
                rss_before = rss_kb(os.getpid())
                first = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
                open_streams(clients, ids[args.warmup :])
                settle()
                rss_after = rss_kb(os.getpid())
                n = args.streams
                print(f"RSS: {(rss_after - rss_before) / n:.2f} KB per stream over {n} streams")
                if first is not None:
                    report(first, tracemalloc.take_snapshot(), n, args.top)
                    tracemalloc.stop()
            finally:
                clients.stop()


if __name__ == "__main__":
    main()
