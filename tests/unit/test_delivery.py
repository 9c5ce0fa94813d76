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
