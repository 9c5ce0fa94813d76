"""Three brokers, replication 3, min.insync.replicas 2: kill -9 of a leader, nothing seen.

The node that leads most partitions of ``tokenrelay.tokens`` dies while jobs
stream. Two replicas remain in sync, so writes go on: every job ends exactly
once, every watcher gets its job whole, a new submission is accepted while the
node is down, every part stays (or is soon again) ready, and no service restarts.
``tokenrelay kafka start`` then brings back only the node that was down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka.admin as ck_admin
import httpx
import pytest

from services.core.settings import Settings
from services.localdev.kafka import LocalCluster
from tests.conftest import ALICE
from tests.support.aggregators import with_aggregator_port
from tests.support.faults import (
    WatchedJobs,
    every_job_ended,
    free_port_block,
    seconds_until,
    still_running,
    three_parts,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

JOBS = 6
TOKENS = 120


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    defaults = Settings()
    nodes = 3
    cluster = LocalCluster(
        tmp_path / "kafka",
        "127.0.0.1",
        free_port_block(2 * nodes),
        nodes,
        defaults.kafka_version,
        defaults.kafka_cache_dir,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def topic_replicas(bootstrap: str, topic: str) -> set[int]:
    md = ck_admin.AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {len(p.replicas) for p in md.topics[topic].partitions.values()}


def busiest_leader(bootstrap: str, topic: str) -> int:
    """The node id that leads the most partitions of ``topic``."""
    md = ck_admin.AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    leaders = Counter(p.leader for p in md.topics[topic].partitions.values())
    return leaders.most_common(1)[0][0]


@pytest.mark.timeout(300)
async def test_kill_9_of_a_leader_in_a_three_broker_cluster(
    make_settings: Callable[..., Settings], cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = with_aggregator_port(
        make_settings(
            kafka_bootstrap=cluster.bootstrap,
            replication_factor=3,
            worker_session_timeout_ms=6000,
        )
    )
    with three_parts(settings, tmp_path) as parts:
        pids = {name: child.proc.pid for name, child in parts.items()}
        async with httpx.AsyncClient(base_url=parts["public"].url, timeout=30) as client:
            jobs = WatchedJobs(client, TOKENS)
            await jobs.submit(JOBS, tokens_per_s=12)
            await jobs.streaming()

            replicas = topic_replicas(cluster.bootstrap, settings.topics.tokens)
            assert replicas == {3}, f"tokens partitions' replica counts: {replicas}"
            victim = cluster.node(busiest_leader(cluster.bootstrap, settings.topics.tokens))
            os.kill(victim.running_pid() or 0, signal.SIGKILL)
            # Until the controller fences the dead node (broker.session.timeout.ms, 9 s) its
            # partitions have no leader: a client told 503 + Retry-After tries again.
            t0, refused = time.monotonic(), 0
            while True:
                r = await client.post("/v1/jobs", json={"prompt": "a node down"}, headers=ALICE)
                if r.status_code == 202:
                    break
                assert r.status_code == 503 and "Retry-After" in r.headers, r.text
                assert time.monotonic() - t0 < 60, "no submission accepted in 60s"
                refused += 1
                await asyncio.sleep(int(r.headers["Retry-After"]))
            during_s = time.monotonic() - t0
            ready = await seconds_until(client, parts, 200, timeout=60)
            watched = await jobs.watched()

            restarted = await asyncio.to_thread(cluster.start)
            assert restarted == [victim.node_id], "only the node that was down starts"
            assert all(n.up for n in cluster.status())

        events = await every_job_ended(cluster.bootstrap, settings, jobs.ids)
        still_running(parts, pids)

    attempts = jobs.check(events, watched)
    print(
        f"\n3 brokers, killed node {victim.node_id} (leader of most tokens partitions): "
        f"{JOBS} jobs lost 0, twice 0, ended at attempts {dict(attempts)}; a submission with "
        f"the node down was accepted after {during_s:.2f}s ({refused} times 503 first); "
        f"readyz 200 after the kill {ready}; "
        f"watchers resumed {len(jobs.reconnects)} times"
    )
