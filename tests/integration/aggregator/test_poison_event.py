"""An undecodable record on the lifecycle topic goes to the DLQ with its error, and the aggregator
still becomes ready when such a record is the last of every partition (it counts as read)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import confluent_kafka as ck
import pytest

from services.core.settings import Settings
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.stack import running
from tests.support.topic_reader import dlq_reader

pytestmark = pytest.mark.kafka


async def test_poison_events_are_dead_lettered_and_do_not_hold_readiness(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = with_aggregator_port(make_settings())
    t, n = settings.topics, settings.topic_partitions
    with running(settings, ["ingest", "worker"]):  # creates the topics
        p = ck.Producer({"bootstrap.servers": settings.kafka_bootstrap})
        for partition in range(n):
            p.produce(t.lifecycle, key=b"not-a-job", value=b"{not json", partition=partition)
        assert p.flush(10) == 0
        # Yielded only once /readyz is 200: past every partition's last record, a poison one.
        with aggregator_process(settings, tmp_path):
            async with dlq_reader(settings.kafka_bootstrap, t.dlq, n) as dlq:
                letters = await dlq.until(lambda ls: len(ls) >= n, what="a letter per record")
    assert {letter.error_kind for letter in letters} == {"undecodable_event"}
    assert sorted(letter.source for letter in letters) == [
        f"{t.lifecycle}[{partition}]@0" for partition in range(n)
    ]
    assert all(letter.raw == "{not json" for letter in letters)
