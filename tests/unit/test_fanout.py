"""The fan-out's dispatch and a stream's bounded buffer, without a broker."""

from __future__ import annotations

import asyncio

import orjson

from services.core.kafka import Admin, KafkaClients, Record
from services.core.partitioner import partition_for
from services.gateway.fanout import Fanout, Subscription, beat_slots
from services.gateway.stream_item import StreamItem
from tests.support.memory_kafka import MemoryKafka

TOPIC = "t.tokens"


def record(partition: int, offset: int, job: str, seq: int, type_: str = "token") -> Record:
    value = orjson.dumps({"type": type_, "attempt": 1, "seq": seq, "job_id": job})
    return Record(TOPIC, partition, offset, job.encode(), value, 0)


def fanout(limit: int = 100) -> Fanout:
    f = Fanout(KafkaClients("127.0.0.1:1"), TOPIC, Admin("127.0.0.1:1"), limit)
    f.assigned({0: 100, 1: 50})
    return f


async def test_a_subscriber_gets_its_jobs_records_from_the_position_it_subscribed_at() -> None:
    f = fanout()
    f.dispatch([record(0, 100, "a", 1), record(1, 50, "b", 1)])
    cut = asyncio.get_running_loop().create_future()
    a = f.subscribe(b"a", 0, cut)
    assert a.live_from == 101, "a record dispatched before subscribing is the stream's to replay"
    f.dispatch([record(0, 101, "a", 2), record(0, 102, "z", 1), record(0, 103, "a", 3)])
    assert a.woken
    assert [i.offset for i in a.take()] == [101, 103]
    assert not a.woken
    assert f.position(0) == 104 and f.position(1) == 51
    recent = f.recent(0, 101, b"a")
    assert recent is not None and [r.offset for r in recent] == [101, 103]
    assert f.recent(0, 99, b"a") is None, "memory does not reach back before its first record"
    found = f.recent_record(0, 102)
    assert found is not None and found.key == b"z"
    assert f.recent_record(0, 99) is None and f.recent_record(0, 104) is None


async def test_watchers_of_one_job_share_one_decoded_item() -> None:
    f = fanout()
    loop = asyncio.get_running_loop()
    subs = [f.subscribe(b"a", 0, loop.create_future()) for _ in range(3)]
    f.dispatch([record(0, 100, "a", 1)])
    items = [s.take()[0] for s in subs]
    assert items[0] is items[1] is items[2]
    f.unsubscribe(subs[0])
    assert f.streams == 2


async def test_a_live_stream_whose_buffer_fills_is_cut_off() -> None:
    f = fanout(limit=3)
    cut = asyncio.get_running_loop().create_future()
    sub = f.subscribe(b"a", 0, cut)
    sub.live = True
    f.dispatch([record(0, 100 + i, "a", i) for i in range(3)])
    assert not cut.done()
    f.dispatch([record(0, 103, "a", 3)])
    assert cut.done() and sub.overflowed
    f.dispatch([record(0, 104, "a", 4)])
    assert sub.take() == [], "an overflowed stream holds nothing"


async def test_a_stream_still_replaying_is_not_cut_off_but_marked() -> None:
    cut = asyncio.get_running_loop().create_future()
    sub = Subscription(b"a", 0, 100, 2, cut)
    for i in range(3):
        sub.offer(StreamItem(100 + i, "token", 1, i, b"{}"))
    assert sub.overflowed and not cut.done()


async def test_ending_the_streams_wakes_them() -> None:
    f = fanout()
    sub = f.subscribe(b"a", 0, asyncio.get_running_loop().create_future())
    await f.end_streams()
    assert sub.closed and sub.woken


async def test_a_heartbeat_is_due_only_for_a_quiet_stream() -> None:
    cut = asyncio.get_running_loop().create_future()
    sub = Subscription(b"a", 0, 100, 10, cut)
    sub.offer(StreamItem(100, "token", 1, 1, b"{}"))
    sub.take()
    sub.beat()
    assert not sub.beat_due, "it sent something since the last beat"
    sub.beat()
    assert sub.beat_due and sub.woken
    waited = asyncio.ensure_future(sub.wait())
    await asyncio.sleep(0)
    assert waited.done(), "a woken stream does not wait"


async def test_heartbeats_are_spread_over_the_cycle_and_reach_every_stream_once() -> None:
    f = fanout()  # heartbeat every 15 s
    slots = beat_slots(15.0)
    assert slots == 60, "a tick every 0.25 s"
    cut = asyncio.get_running_loop().create_future()
    subs = [f.subscribe(f"job-{i}".encode(), 0, cut) for i in range(600)]
    beaten: list[int] = []
    for slot in range(slots):
        f.beat(slot)
        due = [s for s in subs if s.beat_due]
        beaten.append(len(due))
        for s in due:
            s.beat_due = False
    assert beaten == [10] * slots, "each tick beats a sixtieth of the streams"


async def test_a_job_whose_first_event_it_read_is_found_however_far_memory_moved_on() -> None:
    """Where a job's first event is (its submission's ``queued``, seq 0) is remembered for as
    many jobs as records a partition, after a flood of other records pushed it out."""
    f = Fanout(KafkaClients("127.0.0.1:1"), TOPIC, Admin("127.0.0.1:1"), 100, recent=3)
    f.assigned({0: 100})
    f.dispatch([record(0, 100, "a", 0, "queued")])
    found = f.first_recent(0, b"a")
    assert found is not None and found.offset == 100
    assert f.first_recent(1, b"a") is None, "not on another partition"
    f.dispatch([record(0, o, "z", o) for o in range(101, 110)])
    assert f.recent(0, 100, b"a") is None, "the records are gone"
    found = f.first_recent(0, b"a")
    assert found is not None and found.offset == 100
    assert f.first_recent(0, b"z") is None, "met in the middle of its life: its first is not known"
    # the oldest jobs are forgotten first
    f.dispatch([record(0, 110 + n, f"j{n}", 0, "queued") for n in range(2)])
    assert f.first_recent(0, b"a") is None, "the oldest job is forgotten"
    assert f.first_recent(0, b"j1") is not None


async def test_waiting_for_the_next_dispatch() -> None:
    f = fanout()
    assert not await f.next_dispatch(0.01), "nothing dispatched"
    waiter = asyncio.ensure_future(f.next_dispatch(5.0))
    await asyncio.sleep(0)
    f.dispatch([record(0, 100, "a", 1)])
    assert await waiter


async def test_the_running_fan_out_reads_from_the_live_end_and_says_when_it_cannot_read() -> None:
    """The fan-out's loop over an in-memory topic: live records reach the job's stream in
    order; while polls fail ``ready`` names the problem, and nothing is lost meanwhile."""
    kafka = MemoryKafka(partitions=2)
    kafka.create(TOPIC)
    kafka.append(TOPIC, "a", record(0, 0, "a", 0, "queued").value)  # before: not live
    f = Fanout(kafka, TOPIC, kafka.admin(), 100)  # type: ignore[arg-type]
    await f.start()
    try:
        assert await f.ready() is None
        partition = partition_for(b"a", 2)
        sub = f.subscribe(b"a", partition, asyncio.get_running_loop().create_future())
        assert sub.live_from == 1, "the stream goes live where the fan-out reads: the topic's end"
        producer = kafka.producer()
        sent = [
            (seq, (await producer.send(TOPIC, "a", record(0, 0, "a", seq).value)).offset)  # type: ignore[arg-type]
            for seq in (1, 2)
        ]
        await producer.send(TOPIC, "z", record(0, 0, "z", 1).value)  # type: ignore[arg-type]
        got: list[StreamItem] = []
        while len(got) < 2:
            await asyncio.wait_for(sub.wait(), 2)
            got += sub.take()
        assert [(i.seq, i.offset) for i in got] == sent == [(1, 1), (2, 2)]

        kafka.fail_polls(1)
        async with asyncio.timeout(5):
            while (problem := await f.ready()) is None:
                await kafka.wait_for_growth(0.01)
        assert problem is not None and "all brokers down" in problem
        third = await producer.send(TOPIC, "a", record(0, 0, "a", 3).value)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            while await f.ready() is not None or not sub.woken:
                await kafka.wait_for_growth(0.05)
        assert [(i.seq, i.offset) for i in sub.take()] == [(3, third.offset)]
    finally:
        await f.stop()


async def test_it_says_when_it_has_read_past_a_time_on_a_partition() -> None:
    """A stream of a young job waits for the fan-out only until it has read past the job's
    making: had the job's first record come before, the fan-out would remember it."""
    f = fanout()
    assert not f.read_past(0, 1_000), "nothing read yet"
    f.dispatch([record(0, 100, "a", 1)._replace(timestamp_ms=2_000)])
    assert f.read_past(0, 1_000) and f.read_past(0, 2_000)
    assert not f.read_past(0, 2_001), "not that far"
    assert not f.read_past(1, 1_000), "another partition is its own"
