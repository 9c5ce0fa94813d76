"""The most expensive requests a user key may send leave the public face's memory bounded.

The public face runs in a child process, as ``make up`` runs it. After a warm-up,
a user key sends what costs that process most: throughput per minute over the
widest window allowed (44,640 rows) and per hour over two years, a batch of the
most jobs one body may hold, a prompt of the most characters, the longest page
of jobs, each twice. The process's peak resident memory (``VmHWM``) must stay
under ``PEAK_MB`` and grow at most ``GROWTH_MB`` over its warm peak, and it still
answers afterwards. Measured here (2 cores): warm 449 MB, peak 629 MB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from schemas.jobs import MAX_PROMPT_CHARS
from services.core.settings import Settings
from tests.conftest import ALICE
from tests.support.public_stack import peak_rss_mb, public_stack, rss_mb

pytestmark = pytest.mark.kafka

PEAK_MB = 800
"""The bound on the public face's peak RSS, warm-up included (it holds chDB's engine)."""
GROWTH_MB = 350
"""How much the costliest user requests may add to the warm process's peak."""


def _widest(days: float, now: dt.datetime) -> dict[str, str]:
    since = now - dt.timedelta(days=days) + dt.timedelta(minutes=1)
    return {"since": since.isoformat(), "until": now.isoformat()}


@pytest.mark.timeout(600)
def test_the_costliest_user_requests_keep_the_public_face_under_its_bound(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(fake_tokens_per_s=5000.0, worker_concurrency=64)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    jobs = settings.batch_max_jobs
    batch = orjson.dumps({"jobs": [{"prompt": "p", "max_tokens": 1}] * jobs})
    assert len(batch) <= settings.max_body_bytes
    requests: list[tuple[str, str, dict[str, object]]] = [
        ("GET", "/v1/analytics/throughput", {"params": _widest(31, now)}),
        ("GET", "/v1/analytics/throughput", {"params": {"interval": "hour", **_widest(731, now)}}),
        ("GET", "/v1/analytics/cost", {"params": {"group_by": "day", "since": "1970-01-01"}}),
        ("POST", "/v1/jobs", {"json": {"prompt": "x" * MAX_PROMPT_CHARS, "max_tokens": 1}}),
        (
            "POST",
            "/v1/batches",
            {"content": batch, "headers": {"content-type": "application/json"}},
        ),
        ("GET", "/v1/jobs", {"params": {"limit": 500}}),
    ]
    with (
        public_stack(settings, tmp_path) as public,
        httpx.Client(base_url=public.url, timeout=120) as c,
    ):
        assert c.get("/v1/analytics/cost", headers=ALICE).status_code == 200
        warm = peak_rss_mb(public.proc.pid)
        for method, path, kwargs in requests * 2:
            headers = {**ALICE, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
            r = c.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
            kwargs["headers"] = headers
            assert r.status_code in (200, 202), (path, r.status_code, r.text[:300])
            peak = peak_rss_mb(public.proc.pid)
            print(f"{method} {path}: {len(r.content)} bytes, peak {peak:.0f} MB")
        peak, now_mb = peak_rss_mb(public.proc.pid), rss_mb(public.proc.pid)
        assert c.get("/readyz").status_code == 200
    print(f"\npublic face: warm peak {warm:.0f} MB, peak after {peak:.0f} MB, now {now_mb:.0f} MB")
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB (warm {warm:.0f} MB)"
    assert peak - warm < GROWTH_MB, f"peak RSS {peak:.0f} MB (warm {warm:.0f} MB)"
