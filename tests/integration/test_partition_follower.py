"""``PartitionFollower``: a process's in-memory copy of a small topic is read whole, and
counts as read even where the last offsets carry no record; a following that breaks
is reported, not left to serve a stale copy."""

from __future__ import annotations

import asyncio
import uuid

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient

from services.core.breakdown import Breakdown
from services.core.kafka import (
    Admin,
    Consumer,
    KafkaClients,
    OutRecord,
    Producer,
    Record,
    TopicSpec,
)
from services.core.kafka.follower import PartitionFollower

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0


async def _topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"follow-{uuid.uuid4().hex[:8]}"
    await Admin(bootstrap).ensure_topics([TopicSpec(topic, partitions)])
    return topic


def _follower(bootstrap: str, seen: list[Record]) -> PartitionFollower:
    return PartitionFollower(
        KafkaClients(bootstrap), f"test-follow-{uuid.uuid4().hex[:8]}", "test topic", seen.append
    )


async def test_every_record_is_applied_in_order_then_new_ones_live(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap, 2)
    async with Producer(kafka_bootstrap) as producer:
        for i in range(20):
            await producer.send(topic, f"k{i % 5}", f"v{i}".encode())
    seen: list[Record] = []
    follower = _follower(kafka_bootstrap, seen)
    await follower.start([(topic, 0), (topic, 1)], Breakdown())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), DEADLINE_S)
        values = sorted(r.value for r in seen if r.value)
        assert values == sorted(f"v{i}".encode() for i in range(20))
        for p in (0, 1):
            offsets = [r.offset for r in seen if r.partition == p]
            assert offsets == sorted(offsets)
        async with Producer(kafka_bootstrap) as producer:
            await producer.send(topic, "k0", b"later")
        async with asyncio.timeout(DEADLINE_S):
            while not any(r.value == b"later" for r in seen):
                await asyncio.sleep(0.05)
    finally:
        await follower.stop()


async def test_a_partition_whose_records_were_deleted_counts_as_read(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap)
    async with Producer(kafka_bootstrap) as producer:
        for i in range(5):
            await producer.send(topic, "k", f"v{i}".encode())
    # What retention does to an idle control partition: the ends stay, the records go.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deleted = admin.delete_records([ck.TopicPartition(topic, 0, ck.OFFSET_END)])
    await asyncio.to_thread(lambda: [f.result(DEADLINE_S) for f in deleted.values()])
    seen: list[Record] = []
    follower = _follower(kafka_bootstrap, seen)
    await follower.start([(topic, 0)], Breakdown())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), DEADLINE_S)
        assert seen == []
    finally:
        await follower.stop()


async def test_a_partition_ending_in_a_transaction_marker_counts_as_read(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap)
    producer = KafkaClients(kafka_bootstrap).transactional(f"test-follow-{uuid.uuid4().hex[:8]}")
    try:
        await producer.commit([OutRecord(topic, "k", b"committed")], {}, None)
    finally:
        await producer.close()
    # The commit returns before its markers are written: wait until readers see it ended.
    async with Consumer(kafka_bootstrap, f"test-ends-{uuid.uuid4().hex[:8]}") as probe:
        async with asyncio.timeout(DEADLINE_S):
            while (await probe.watermarks(topic, 0))[1] < 2:
                await asyncio.sleep(0.05)
    seen: list[Record] = []
    follower = _follower(kafka_bootstrap, seen)
    await follower.start([(topic, 0)], Breakdown())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), DEADLINE_S)
        assert [r.value for r in seen] == [b"committed"]
    finally:
        await follower.stop()


async def test_an_apply_that_raises_ends_the_following_and_reports_the_breakdown(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap)
    seen: list[Record] = []

    def apply(rec: Record) -> None:
        if rec.value == b"bug":
            raise RuntimeError("a bug in apply")
        seen.append(rec)

    breakdown = Breakdown()
    follower = PartitionFollower(
        KafkaClients(kafka_bootstrap), f"test-follow-{uuid.uuid4().hex[:8]}", "test topic", apply
    )
    await follower.start([(topic, 0)], breakdown)
    try:
        await asyncio.wait_for(follower.caught_up.wait(), DEADLINE_S)
        async with Producer(kafka_bootstrap) as producer:
            await producer.send(topic, "k", b"fine")
            await producer.send(topic, "k", b"bug")
        async with asyncio.timeout(DEADLINE_S):
            while breakdown.reason is None:
                await asyncio.sleep(0.05)
        reason = "following the test topic stopped: RuntimeError('a bug in apply')"
        assert breakdown.reason == reason
        assert [r.value for r in seen] == [b"fine"]
    finally:
        await follower.stop()
