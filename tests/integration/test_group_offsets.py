"""Reading a group's committed offsets never takes the process down.

librdkafka's admin ListConsumerGroupOffsets dies of SIGSEGV when the coordinator
answers NOT_COORDINATOR, which is the usual first answer for a group on a new
broker (confluentinc/librdkafka#5040): a worker sharing its budget, or a gateway
answering ``GET /v1/queues``, died at its first look. ``Admin.committed`` reads
with a consumer of the group instead. The reads run in a child process on a broker
of the test's own, so that a crash fails this test, not the test run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import Settings
from services.localdev.kafka import throwaway_broker

pytestmark = pytest.mark.kafka

GROUPS = 5

READ = """
import asyncio, sys
from services.core.kafka.admin import Admin
from services.core.kafka.common import TopicSpec

async def main(bootstrap: str) -> None:
    admin = Admin(bootstrap)
    await admin.ensure_topics([TopicSpec("jobs", 3, 1, {})])
    for n in range(int(sys.argv[2])):
        lag = await admin.partition_lag(f"group-{n}", {"jobs": 3}, timeout=15)
        print(sorted(lag.items()), flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    """A broker that has never seen a group: its offsets topic is created by our first read."""
    broker = throwaway_broker(tmp_path / "kafka", Settings())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def test_the_first_lag_reads_on_a_new_broker_answer(fresh_broker: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", READ, fresh_broker, str(GROUPS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-3000:]}"
    nothing_consumed = str([(("jobs", p), 0) for p in range(3)])
    assert run.stdout.splitlines() == [nothing_consumed] * GROUPS, run.stdout
