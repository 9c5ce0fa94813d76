"""The aggregator commits an offset only once the changelog writes before it left Faust's
buffer, whose own flush may give up with messages still in it."""

from __future__ import annotations

from services.aggregator.transport import drained


class GivingUpBuffer:
    """Like Faust's: each flush sends at most ``per_flush`` messages, then gives up."""

    def __init__(self, size: int, per_flush: int) -> None:
        self.size, self.per_flush, self.flushes = size, per_flush, 0

    async def flush(self) -> None:
        self.flushes += 1
        self.size = max(0, self.size - self.per_flush)


async def test_the_buffer_is_flushed_until_empty_however_often_a_flush_gives_up() -> None:
    buffer = GivingUpBuffer(size=7, per_flush=2)
    assert await drained(buffer)
    assert buffer.size == 0 and buffer.flushes == 4


async def test_an_empty_buffer_commits_at_once() -> None:
    buffer = GivingUpBuffer(size=0, per_flush=1)
    assert await drained(buffer)
    assert buffer.flushes == 0


async def test_a_buffer_that_never_empties_skips_the_commit_after_the_deadline() -> None:
    buffer = GivingUpBuffer(size=3, per_flush=0)
    assert not await drained(buffer, deadline_s=0.05)
    assert buffer.size == 3
