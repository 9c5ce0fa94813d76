"""Waiting for a condition with a deadline, never a sleep that hopes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.conftest import ALICE


async def until(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 60.0
) -> Any:
    """Call ``probe`` until ``done(result)``; fail with the last result after ``timeout``."""
    give_up = time.monotonic() + timeout
    while True:
        last = await probe()
        if done(last):
            return last
        if time.monotonic() > give_up:
            raise TimeoutError(f"not reached in {timeout}s; last: {last}")
        await asyncio.sleep(0.1)


def state_probe(
    c: httpx.AsyncClient, job_id: str, headers: dict[str, str] = ALICE
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``GET /v1/jobs/{id}`` as a probe: the state, or ``{"status": "http <code>"}``."""

    async def probe() -> dict[str, Any]:
        r = await c.get(f"/v1/jobs/{job_id}", headers=headers)
        return r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}

    return probe


def finished(s: dict[str, Any]) -> bool:
    return s.get("status") in ("succeeded", "failed", "cancelled")
