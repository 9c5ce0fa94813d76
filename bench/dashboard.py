"""The dashboard's weight and speed per page, in Debian's Chromium, on ``tokenrelay up``.

Starts the stack as ``make up`` does (``bench.scale_out.start_up``: its own
throwaway broker and data dir), runs a few jobs and a batch so every page has
data, then opens each page in a fresh browser context (a cold cache) and prints:
the bytes transferred for the page itself (HTML, JS, CSS) and for its API reads,
the requests, the first contentful paint, and when its data was on screen.

    python -m bench.dashboard
    python -m bench.dashboard --url http://127.0.0.1:8000 --api-key trk_dev_key

The figures are in docs/performance.md ("The dashboard").
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.scale_out import API_KEY, start_up, stop_up
from tests.support.browser import chromium

console = Console(stderr=True)

MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const api = res.filter((r) => new URL(r.name).pathname.startsWith("/v1/"));
  const page = res.filter((r) => !api.includes(r));
  const sum = (rs) => rs.reduce((s, r) => s + (r.transferSize || r.encodedBodySize || 0), 0);
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {
    page_bytes: (nav ? nav.transferSize : 0) + sum(page),
    api_bytes: sum(api),
    requests: 1 + res.length,
    fcp_ms: fcp ? fcp.startTime : null,
    shown_ms: performance.now(),
  };
}"""


def pages(job_id: str) -> list[tuple[str, str, str]]:
    """(name, path, the selector that says the page's data is on screen)."""
    return [
        ("overview", "/ui", "#overview-queues table"),
        ("jobs", "/ui/jobs", "#job-list table"),
        ("job", f"/ui/jobs/{job_id}", "#timeline li:has-text('completed')"),
        ("batches", "/ui/batches", "#batch-list table"),
        ("queues", "/ui/queues", "#worker-table table"),
        ("analytics", "/ui/analytics", "#charts svg"),
        ("dead letters", "/ui/dead-letters", "#dead-letter-list p, #dead-letter-list table"),
    ]


def seed(base: str, key: str) -> str:
    """A few jobs and a batch, ended; the id of one job."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        ids = [
            client.post("/v1/jobs", json={"prompt": f"bench {i}", "max_tokens": 40}).json()[
                "job_id"
            ]
            for i in range(5)
        ]
        batch = {"jobs": [{"prompt": f"batch {i}", "max_tokens": 8} for i in range(10)]}
        client.post("/v1/batches", json=batch).raise_for_status()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{ids[-1]}").json().get("status") != "succeeded":
            if time.monotonic() > deadline:
                raise RuntimeError("the seeded jobs did not end in 60 s")
            time.sleep(0.2)
    return ids[-1]


def measure(browser: Any, base: str, key: str, job_id: str) -> list[dict[str, Any]]:
    rows = []
    for name, path, ready in pages(job_id):
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        try:
            page.goto(f"{base}{path}#key={key}")
            page.locator(ready).first.wait_for(timeout=60_000)
            rows.append({"page": name, **page.evaluate(MEASURE)})
        finally:
            context.close()
    return rows


@contextlib.contextmanager
def stack(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tr-dash-") as tmp:
        console.print("starting tokenrelay up …")
        up, base = start_up(1, 1, Path(tmp))
        try:
            yield base
        finally:
            console.print("stopping …")
            stop_up(up)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running stack (default: start one)")
    parser.add_argument("--api-key", default=API_KEY, help="an admin key of that stack")
    opts = parser.parse_args(argv)
    with stack(opts.url) as base:
        console.print("seeding jobs …")
        job_id = seed(base, opts.api_key)
        console.print("measuring each page in chromium …")
        with chromium() as browser:
            rows = measure(browser, base, opts.api_key, job_id)
    table = Table(title="dashboard pages, cold cache, Debian Chromium headless")
    for col in ("page", "page KB", "API KB", "requests", "first paint ms", "data shown ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["page"],
            f"{r['page_bytes'] / 1024:.1f}",
            f"{r['api_bytes'] / 1024:.1f}",
            str(r["requests"]),
            "-" if r["fcp_ms"] is None else f"{r['fcp_ms']:.0f}",
            f"{r['shown_ms']:.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
