"""Fairness across tenants within a priority, through the real broker.

Tenant alice floods 120 ``low`` jobs; then bob submits 4. Without fair queuing
bob's jobs would wait behind alice's whole backlog (120 one-second jobs on 4
slots: half a minute); with it they start within about a slot's turnover. The
bounds are computed from the job's duration, not written down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import pytest

from schemas.events import JobEvent
from services.core.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.jobs import submit
from tests.support.stack import running
from tests.support.topic_reader import events_reader, of_type

pytestmark = pytest.mark.kafka

CONCURRENCY = 4
FLOOD, FEW = 120, 4
TOKENS, TOKENS_PER_S = 20, 20
JOB_S = TOKENS / TOKENS_PER_S
"""One job's duration: a slot's turnover."""
PACED = {
    "priority": "low",
    "max_tokens": TOKENS,
    "provider_options": {"tokens_per_s": TOKENS_PER_S},
}
SLACK_S = 1.5
"""Fetch, the start mark's commit, the ``started`` event: what a start costs beyond a free slot."""


@dataclass
class Waits:
    """Bob's queue waits (ms, submission to ``started``) and alice's backlog when he came."""

    bob_ms: list[float]
    alice_waiting: int


async def bob_behind_alice(base: str, settings: Settings, *, flood: int) -> Waits:
    """Alice submits ``flood`` low jobs; once her jobs fill the slots (or at once, with no
    flood), bob submits ``FEW``; returns when bob's have all started."""
    t = settings.topics
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        events_reader(settings.kafka_bootstrap, t.tokens, settings.topic_partitions) as log,
    ):
        alice = set(await asyncio.gather(*(submit(client, ALICE, **PACED) for _ in range(flood))))
        if flood:
            await log.until(
                lambda ev: len(of_type(ev, "started")) >= CONCURRENCY, what="alice's jobs running"
            )
        begun = {e.job_id for e in of_type([v for _, v in log.items], "started")}
        bob = {await submit(client, BOB, **PACED) for _ in range(FEW)}

        def bob_started(ev: list[JobEvent]) -> bool:
            return {e.job_id for e in of_type(ev, "started")} >= bob

        events = await log.until(bob_started, timeout=60 + flood * JOB_S, what="bob's starts")
    waits = [e.queue_wait_ms for e in of_type(events, "started") if e.job_id in bob]
    return Waits(waits, len(alice - begun))


async def test_a_tenant_starts_within_a_slots_turnover_whatever_anothers_backlog(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(worker_concurrency=CONCURRENCY, worker_grace_s=0.5)
    with running(settings, ["ingest", "worker"]) as base:
        waits = await bob_behind_alice(base, settings, flood=FLOOD)

    backlog_s = waits.alice_waiting * JOB_S / CONCURRENCY
    first_bound = JOB_S + SLACK_S
    # Turns alternate bob, alice, …: bob's last of FEW starts after 2·FEW - 1 free slots.
    all_bound = (2 * FEW - 1) * JOB_S / CONCURRENCY + JOB_S + SLACK_S
    print(
        f"\nbob waited {min(waits.bob_ms):.0f}-{max(waits.bob_ms):.0f} ms behind "
        f"{waits.alice_waiting} of alice's jobs ({backlog_s:.0f} s of her work); "
        f"bounds {first_bound:.1f} s / {all_bound:.1f} s"
    )
    assert backlog_s > 3 * all_bound, "the flood is too small to tell fair from FIFO"
    assert min(waits.bob_ms) / 1000 <= first_bound
    assert max(waits.bob_ms) / 1000 <= all_bound
