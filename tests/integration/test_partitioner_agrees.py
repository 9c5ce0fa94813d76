"""Our murmur2 picks the partition librdkafka's murmur2_random picks, on a real broker."""

from __future__ import annotations

import uuid

import pytest

from services.core.ids import new_job_id
from services.core.kafka import Admin, Producer, TopicSpec
from services.core.partitioner import partition_for

pytestmark = pytest.mark.kafka


async def test_producer_and_partition_for_agree(kafka_bootstrap: str) -> None:
    topic = f"part-{uuid.uuid4().hex[:8]}"
    await Admin(kafka_bootstrap).ensure_topics([TopicSpec(topic, 7)])
    keys = [new_job_id() for _ in range(60)]
    async with Producer(kafka_bootstrap) as producer:
        futures = [await producer.produce(topic, k, b"{}") for k in keys]
        delivered = [await f for f in futures]
    assert [d.partition for d in delivered] == [partition_for(k, 7) for k in keys]
    assert len({d.partition for d in delivered}) > 1
