"""Settling jobs: each job's last records and its consumer offset, in one Kafka transaction.

Why transactions: the terminal event (``completed``/``failed``/``cancelled``),
or the hand-off to the retry topic or the DLQ, must become visible exactly
when the job's offset is committed — else a crash between the two either loses
the job or ends it twice. A transaction binds them: read-committed consumers
see the terminal event if and only if the offset (with the ledger's metadata,
see ``offsets``) moved past the job. Token events stay outside transactions,
on the ordinary idempotent producer: they are many, a duplicate is harmless
(consumers drop repeats by ``(attempt, seq)``), and each is visible at once.

One committer per worker process serialises the transactions and batches
whatever is waiting when the previous one ends (``commit`` latency is a few
milliseconds on a local broker, so a busy worker settles many jobs per
transaction). A start mark (``sync``) is an offsets-only transaction: the
worker records that it started a job before it says so on ``tokens``, so the
next owner after a crash runs the job as a new attempt.

Order of one round: take the waiting settlements → drop those whose partition
this worker no longer owns (the new owner runs them again) → snapshot the
ledger as if they had ended → produce their records and commit the offsets →
on success mark them ended; on abort put them back and retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.breakdown import Breakdown
from services.core.kafka import (
    OutRecord,
    TopicPartition,
    TransactionAbortedError,
    TransactionalProducer,
)
from services.core.metrics import TRANSACTIONS
from services.worker.offsets import OffsetLedger

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)
STALLED_AFTER_S = 3.0
"""Transactions failing this long make ``/readyz`` say so (a single abort is routine)."""


class NotOwnedError(Exception):
    """The job's partition moved to another worker before its settlement committed."""


@dataclass
class Settlement:
    tp: TopicPartition | None
    offset: int | None
    records: list[OutRecord]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Committer:
    def __init__(
        self,
        producer: TransactionalProducer,
        ledger: OffsetLedger,
        group_metadata: Callable[[], Awaitable[Any]],
    ) -> None:
        self.producer = producer
        self.ledger = ledger
        self._group_metadata = group_metadata
        self._waiting: list[Settlement] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing: tuple[float, str] | None = None
        """Since when (monotonic) the transactions have been aborting, and the last error."""

    def stalled_reason(self, after_s: float = STALLED_AFTER_S) -> str | None:
        """Why the worker cannot settle jobs, once commits have failed for ``after_s``."""
        if self._failing is None:
            return None
        since, error = self._failing
        failing_for = time.monotonic() - since
        if failing_for < after_s:
            return None
        return f"transactions have failed for {failing_for:.0f}s: {error}"

    def start(self, breakdown: Breakdown) -> None:
        self._task = asyncio.create_task(self._run(), name="committer")
        breakdown.watch(self._task, "the committer")

    async def settle(self, tp: TopicPartition, offset: int, records: list[OutRecord]) -> None:
        """Publish ``records`` and mark the job at ``tp``@``offset`` ended, atomically."""
        await self._submit(Settlement(tp, offset, records))

    async def sync(self) -> None:
        """Commit the ledger's current state (start marks, skipped offsets)."""
        await self._submit(Settlement(None, None, []))

    async def _submit(self, s: Settlement) -> None:
        self._waiting.append(s)
        self._wake.set()
        await s.done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if batch:
                try:
                    await self._round(batch)
                except Exception as exc:
                    log.exception("settling %d jobs failed", len(batch))
                    for s in batch:
                        if not s.done.done():
                            s.done.set_exception(exc)

    async def _round(self, batch: list[Settlement]) -> None:
        attempt = 0
        while True:
            # The group metadata comes from the consumer thread, after any revocation it
            # was handling; the ledger is up to date with ownership from here to the commit.
            group_metadata = await self._group_metadata()
            for s in batch:
                if s.tp is not None and not self.ledger.owns(s.tp) and not s.done.done():
                    s.done.set_exception(NotOwnedError(f"{s.tp[0]}[{s.tp[1]}] was revoked"))
            batch = [s for s in batch if not s.done.done()]
            finishing: dict[TopicPartition, set[int]] = {}
            for s in batch:
                if s.tp is not None and s.offset is not None:
                    finishing.setdefault(s.tp, set()).add(s.offset)
            offsets = self.ledger.take_commit(finishing)
            records = [r for s in batch for r in s.records]
            if not records and not offsets:
                break
            try:
                await self.producer.commit(records, offsets, group_metadata)
            except TransactionAbortedError as exc:
                self.ledger.commit_failed(offsets)
                TRANSACTIONS.labels("aborted").inc()
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                self._note_abort(exc, len(batch))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self._note_commit(attempt)
            TRANSACTIONS.labels("committed").inc()
            self.ledger.committed(offsets, finishing)
            break
        for s in batch:
            if not s.done.done():
                s.done.set_result(None)

    def _note_abort(self, exc: Exception, settlements: int) -> None:
        if self._failing is None:
            log.warning("%s; retrying %d settlements until one commits", exc, settlements)
        self._failing = (self._failing[0] if self._failing else time.monotonic(), str(exc))

    def _note_commit(self, attempt: int) -> None:
        if self._failing is not None:
            since = time.monotonic() - self._failing[0]
            log.info("settling again after %.1fs and %d attempts", since, attempt + 1)
            self._failing = None

    async def stop(self) -> None:
        """Commit what is waiting, then stop."""
        if self._task is None:
            return
        if self._waiting:
            await self.sync()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
