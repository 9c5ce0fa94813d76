"""How a stream's delivery ends: the job ended, the client left, stalled, or reading failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from services.core.errors import KafkaError
from services.gateway.delivery import ClientGoneError, Outcome, deliver
from services.gateway.stream_item import StreamItem
from services.gateway.watch import SlowClientError

ITEM = StreamItem(1, "token", 1, 1, b"{}")


async def batches(
    n: int, then: BaseException | None = None
) -> AsyncGenerator[list[StreamItem], None]:
    for _ in range(n):
        yield [ITEM]
    if then is not None:
        raise then


async def never() -> None:
    await asyncio.Event().wait()


async def test_the_outcome_of_each_way_a_stream_ends() -> None:
    loop = asyncio.get_running_loop()
    written: list[list[StreamItem]] = []

    async def write(batch: list[StreamItem]) -> None:
        written.append(batch)

    async def gone_on_write(_batch: list[StreamItem]) -> None:
        raise ClientGoneError

    async def stuck(_batch: list[StreamItem]) -> None:
        await never()

    assert await deliver(batches(3), write, never(), loop.create_future()) is Outcome.ENDED
    assert len(written) == 3
    assert await deliver(batches(3), gone_on_write, never(), loop.create_future()) is Outcome.GONE
    left = loop.create_future()
    left.set_result(None)
    assert await deliver(batches(3), stuck, left, loop.create_future()) is Outcome.GONE
    cut = loop.create_future()
    loop.call_later(0.05, cut.set_result, None)
    assert await deliver(batches(3), stuck, never(), cut) is Outcome.CUT, "a blocked write is cut"
    stalled = batches(1, SlowClientError())
    assert await deliver(stalled, write, never(), loop.create_future()) is Outcome.CUT
    broken = batches(1, KafkaError("broker away"))
    assert await deliver(broken, write, never(), loop.create_future()) is Outcome.FAILED


async def test_a_stream_that_ends_early_leaves_its_caller_free_to_finish_the_response() -> None:
    loop = asyncio.get_running_loop()
    left = loop.create_future()
    loop.call_later(0.05, left.set_result, None)

    async def write(_batch: list[StreamItem]) -> None:
        pass

    async def idle() -> AsyncGenerator[list[StreamItem], None]:
        yield [ITEM]
        await never()
        yield []

    assert await deliver(idle(), write, left, loop.create_future()) is Outcome.GONE
    await asyncio.sleep(0)  # not cancelled: the caller can still write its last chunk
    cut = loop.create_future()
    loop.call_later(0.05, cut.set_result, None)
    assert await deliver(idle(), write, never(), cut) is Outcome.CUT
    await asyncio.sleep(0)


async def test_a_server_cancelling_the_request_cancels_the_stream() -> None:
    loop = asyncio.get_running_loop()

    async def write(_batch: list[StreamItem]) -> None:
        await never()

    task = asyncio.create_task(deliver(batches(1), write, never(), loop.create_future()))
    loop.call_later(0.05, task.cancel)
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done and task.cancelled()
