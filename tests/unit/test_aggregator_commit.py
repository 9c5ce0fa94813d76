"""The aggregator commits an offset only once the broker acknowledged every table write in
flight when the commit began: a write still on its way into the client counts."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from services.aggregator.transport import (
    ChangelogWriteError,
    acknowledged,
    stream_records_after_seek,
)


async def test_a_commit_waits_for_writes_acknowledged_after_it_began() -> None:
    loop = asyncio.get_running_loop()
    sends = [loop.create_future() for _ in range(3)]
    for i, send in enumerate(sends):
        loop.call_later(0.01 * (i + 1), send.set_result, i)
    assert await acknowledged(sends)
    assert all(s.done() for s in sends)


async def test_nothing_in_flight_commits_at_once() -> None:
    assert await acknowledged([])


async def test_a_write_never_acknowledged_skips_the_commit_after_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    done, stuck = loop.create_future(), loop.create_future()
    done.set_result(0)
    assert not await acknowledged([done, stuck], deadline_s=0.05)
    assert not stuck.done()


async def test_a_refused_write_is_never_committed_past() -> None:
    loop = asyncio.get_running_loop()
    refused = loop.create_future()
    refused.set_exception(RuntimeError("MessageSizeTooLarge"))
    with pytest.raises(ChangelogWriteError, match="MessageSizeTooLarge"):
        await acknowledged([refused])


def test_before_the_seek_only_table_recovery_reads_records() -> None:
    stream, changelog, control = TP("t.lifecycle", 1), TP("agg-jobs-changelog", 1), TP("t.ctl", 0)
    records = {stream: [136, 137, 138], changelog: [5, 6], control: [9]}
    kept, dropped = stream_records_after_seek(records, {"agg-jobs-changelog"})
    assert kept == {changelog: [5, 6]}
    assert dropped == 4
