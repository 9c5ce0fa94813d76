"""``Producer.produce_all``: many records, one wait, each one's place in order; a failed
delivery raises once every record is reported."""

from __future__ import annotations

import uuid

import pytest

from services.core.errors import DeliveryError
from services.core.kafka import Admin, Producer, TopicSpec
from services.core.partitioner import partition_for
from tests.support.topic_reader import TopicReader

pytestmark = pytest.mark.kafka

RECORDS = 2_000
"""More than one yield to the loop's worth (``YIELD_EVERY``)."""


async def test_every_record_lands_and_is_reported_where_in_order(kafka_bootstrap: str) -> None:
    topic = f"many-{uuid.uuid4().hex[:8]}"
    await Admin(kafka_bootstrap).ensure_topics([TopicSpec(topic, 3)])
    records = [(topic, f"key-{i}", f"value-{i}".encode(), None) for i in range(RECORDS)]
    async with Producer(kafka_bootstrap) as producer:
        delivered = await producer.produce_all(records)
    assert [d.partition for d in delivered] == [partition_for(k, 3) for _, k, _, _ in records]
    for p in range(3):
        offsets = [d.offset for d in delivered if d.partition == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    async with TopicReader(kafka_bootstrap, topic, 3, lambda v: v) as reader:
        await reader.until(lambda seen: len(seen) >= RECORDS, what="every record")
    at = {(r.partition, r.offset): value for r, value in reader.items}
    assert [at[(d.partition, d.offset)] for d in delivered] == [v for _, _, v, _ in records]


async def test_a_failed_delivery_raises_after_all_are_reported(kafka_bootstrap: str) -> None:
    topic = f"many-{uuid.uuid4().hex[:8]}"
    await Admin(kafka_bootstrap).ensure_topics([TopicSpec(topic, 1)])
    records = [(topic, "k", b"v", None), (f"absent-{uuid.uuid4().hex[:8]}", "k", b"v", None)]
    async with Producer(
        kafka_bootstrap, **{"message.timeout.ms": 2000, "allow.auto.create.topics": False}
    ) as producer:
        with pytest.raises(DeliveryError, match=r"^delivery to absent-.*timed out"):
            await producer.produce_all(records)
