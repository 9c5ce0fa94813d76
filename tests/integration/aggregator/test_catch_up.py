"""The last record of each partition, which a restarted aggregator must reach before it is
ready: found past commit markers and aborted transactions, absent for an empty partition."""

from __future__ import annotations

import uuid

import confluent_kafka as ck
import pytest

from services.aggregator.catch_up import caught_up, targets
from services.core.kafka import KafkaClients
from services.core.kafka.common import TopicSpec

pytestmark = pytest.mark.kafka


def _transaction(p: ck.Producer, topic: str, partition: int, n: int, *, commit: bool) -> None:
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=partition)
    if commit:
        p.commit_transaction(10)
    else:
        p.flush(10)
        p.abort_transaction(10)


async def test_the_last_record_lies_before_markers_and_aborted_records(
    kafka_bootstrap: str,
) -> None:
    clients = KafkaClients(kafka_bootstrap)
    topic = f"catch-up-{uuid.uuid4().hex[:8]}"
    await clients.admin().ensure_topics([TopicSpec(topic, 4)])
    p = ck.Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": topic})
    p.init_transactions(10)
    _transaction(p, topic, 0, 3, commit=True)  # 0 1 2, marker 3
    _transaction(p, topic, 2, 2, commit=True)  # 0 1, marker 2
    _transaction(p, topic, 2, 3, commit=False)  # 3 4 5 aborted, marker 6
    for _ in range(100):  # a record and a marker each: the last record is 198
        _transaction(p, topic, 3, 1, commit=True)
    for _ in range(40):  # a tail of aborted transactions longer than the first window
        _transaction(p, topic, 3, 1, commit=False)

    found = await targets(clients, topic, 4, owned=[0, 1, 2, 3])

    assert found == {0: 2, 2: 1, 3: 198}  # partition 1 is empty: nothing to wait for
    assert not caught_up(found, {0: 2, 2: 1, 3: 197})
    assert caught_up(found, {0: 2, 2: 1, 3: 198, 1: -1})
    assert caught_up(found, {0: 3, 2: 6, 3: 300})  # committed past the markers
