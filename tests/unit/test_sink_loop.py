"""The analytics sink's loop over an in-memory Kafka into the real engine (chDB).

Jobs are run by a worker on ``MemoryKafka``; the sink reads their events in small
batches. An insert that ClickHouse applied but whose answer never came back is
the crash window of the exactly-once argument (docs/design.md): the sink must
start a new session, find its intent, insert that same batch again, and count
every job once.
The kill -9 version of this runs against a real broker in tests/faults.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from services.analytics.clickhouse import ClickHouse
from services.analytics.migrate import migrate
from services.analytics.sink import Sink
from services.core.errors import ClickHouseError
from services.core.metrics import SINK_REPLAYED_BATCHES
from tests.support.memory_jobs import PARTITIONS, ended, events, settings, submit, worker
from tests.support.memory_kafka import MemoryKafka


class AnswerLost:
    """The engine, except that the n-th insert into ``jobs`` is applied but its answer lost.

    The sink cannot tell that from a crash before the insert: it must insert the
    batch again, and only the deduplication token keeps the rows and rollups whole.
    """

    def __init__(
        self, ch: ClickHouse, fail_jobs_insert: int, error: Exception | None = None
    ) -> None:
        self.ch = ch
        self.fail_at = fail_jobs_insert
        self.error = error or ClickHouseError("insert into jobs failed: connection reset")
        self.jobs_inserts = 0

    async def insert(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        dedup_token: str | None = None,
    ) -> None:
        await self.ch.insert(table, column_names, columns, dedup_token)
        if table == "jobs":
            self.jobs_inserts += 1
            if self.jobs_inserts == self.fail_at:
                raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ch, name)


async def count(ch: ClickHouse, sql: str) -> int:
    return int((await ch.query(sql)).rows[0][0])


@pytest.fixture
async def engine(chdb_url: str) -> Any:
    ch = await ClickHouse.open(chdb_url, f"sink{uuid.uuid4().hex[:10]}", role="sink")
    await migrate(ch)
    yield ch
    await ch.close()


@pytest.mark.parametrize(
    "error",
    [
        ClickHouseError("insert into jobs failed: connection reset"),
        # not an error the sink knows: a bug or a driver's surprise must not stop it for good
        ValueError("a driver's surprise"),
    ],
    ids=["clickhouse-error", "unexpected-error"],
)
async def test_a_batch_whose_insert_answer_was_lost_is_inserted_again_and_counts_once(
    engine: ClickHouse, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = MemoryKafka(PARTITIONS)
    async with worker(kafka):
        jobs = await submit(kafka, 12, max_tokens=4)
        await kafka.until(ended(kafka, jobs))
    lifecycle = [e for e in events(kafka) if e.type != "token"]
    s = settings(sink_batch_records=10, sink_flush_s=0.05)
    cut = AnswerLost(engine, fail_jobs_insert=2, error=error)
    sink = Sink(s, kafka.producer(), cut, clients=kafka)  # type: ignore[arg-type]
    replayed = SINK_REPLAYED_BATCHES._value.get()
    await sink.start()
    try:
        topic = s.topics.lifecycle
        ends = {p: len(part) for p, part in enumerate(kafka.create(topic))}

        def caught_up() -> bool:
            done = {p: kafka.committed(s.analytics_group, (topic, p)) for p in ends}
            return all(c.offset == ends[p] and c.metadata == "" for p, c in done.items())

        await kafka.until(caught_up, timeout=20)
    finally:
        await sink.stop()
    assert cut.jobs_inserts > 2, "the failed insert was not the last"
    assert SINK_REPLAYED_BATCHES._value.get() > replayed, "the cut batch was inserted again"
    assert await count(engine, "SELECT count() FROM jobs") == len(jobs)
    assert await count(engine, "SELECT uniqExact(job_id) FROM jobs") == len(jobs)
    assert await count(engine, "SELECT count() FROM job_events") == len(lifecycle)
    assert await count(engine, "SELECT sum(jobs) FROM throughput_minutely") == len(jobs)
    restarts = [r.getMessage() for r in caplog.records if "analytics sink restarts" in r.message]
    assert len(restarts) == 1, restarts
