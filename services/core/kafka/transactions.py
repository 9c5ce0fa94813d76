"""A transactional producer: records and consumer offsets become visible together, or not at all.

One transaction = begin → produce the records → ``send_offsets_to_transaction``
with the consumer's group metadata (KIP-447: a consumer that lost its
partitions in a rebalance cannot commit for them, so a zombie's work is
fenced) → commit. Read-committed consumers never see the records of an
aborted transaction.

Every call runs on one single-thread executor, since a transaction is a
sequence on one producer. ``commit`` raises ``TransactionAbortedError`` when
the transaction did not take effect, and the caller retries it (with fresh
group metadata). Two failures replace the librdkafka producer instead of
leaving the worker wedged: a fatal error (fenced, or an idempotence state it
cannot recover), and a call that does not return by its deadline —
``send_offsets_to_transaction`` can block past its timeout after a broker
restart (confluentinc/librdkafka#5456, #5511). The replacement's
``init_transactions`` fences the old producer and aborts its open transaction,
so nothing of the abandoned attempt becomes visible; the thread stuck in the
old call is a daemon (``Lane``), left to finish on its own without holding up
the process's exit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn, cast

import confluent_kafka as ck

from services.core.errors import KafkaError
from services.core.kafka.common import PRODUCER_DEFAULTS, TopicPartition, _rdkafka_log

log = logging.getLogger(__name__)


class TransactionAbortedError(KafkaError):
    """The transaction was aborted; none of its records or offsets took effect."""


class ProducerFencedError(KafkaError):
    """This transactional producer is fenced or failed fatally; it must be replaced."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: str | bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """The next offset to read on a partition, and metadata stored with it (≤ a few KiB)."""

    offset: int
    metadata: str = ""


class TransactionalProducer:
    def __init__(self, bootstrap: str, transactional_id: str, **overrides: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "logger": _rdkafka_log,
            **PRODUCER_DEFAULTS,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 60_000,
            "linger.ms": 0,
            **overrides,
        }
        self.transactional_id = transactional_id
        self._producer: ck.Producer | None = None
        self._lane = Lane("txn-producer")
        self.replaced = 0
        """How many times the librdkafka producer was given up and replaced."""

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.wrap_future(self._lane.submit(partial(fn, *args)))

    async def start(self, timeout: float = 30.0) -> None:
        if self._producer is not None:
            return
        producer = ck.Producer(self._config)
        try:
            await self._call(producer.init_transactions, timeout)
        except ck.KafkaException as exc:
            raise KafkaError(
                f"init transactions for {self.transactional_id}: {exc.args[0].str()}",
                code=exc.args[0].code(),
            ) from exc
        self._producer = producer
        if self.replaced:
            log.info("transactional producer %s re-created", self.transactional_id)

    def _abandon(self, why: str) -> None:
        """Give up the producer (and its executor, whose thread may be stuck in it)."""
        log.warning("transactional producer %s replaced: %s", self.transactional_id, why)
        self.replaced += 1
        self._producer = None
        self._lane.close()
        self._lane = Lane("txn-producer")

    async def commit(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[TopicPartition, OffsetCommit],
        group_metadata: Any,
        timeout: float = 5.0,
    ) -> None:
        """Produce ``records`` and commit ``offsets`` for the group, atomically.

        Each librdkafka call may take ``timeout``; the whole transaction gets twice
        that before the producer is deemed wedged and replaced.
        """
        try:
            await self.start(timeout)
        except KafkaError as exc:
            raise TransactionAbortedError(f"no transactional producer: {exc}") from exc
        assert self._producer is not None
        call = self._call(self._transact, self._producer, records, offsets, group_metadata, timeout)
        try:
            async with asyncio.timeout(2 * timeout):
                await call
        except TimeoutError as exc:
            self._abandon(f"a transaction did not return in {2 * timeout:.0f}s")
            raise TransactionAbortedError("transaction abandoned: the producer was wedged") from exc
        except ProducerFencedError as exc:
            self._abandon(str(exc))
            raise TransactionAbortedError(f"transaction aborted: {exc}") from exc

    @staticmethod
    def _transact(
        p: ck.Producer,
        records: Sequence[OutRecord],
        offsets: Mapping[TopicPartition, OffsetCommit],
        group_metadata: Any,
        timeout: float,
    ) -> None:
        failures: list[ck.KafkaError] = []

        def on_delivery(err: ck.KafkaError | None, _msg: ck.Message) -> None:
            if err is not None:
                failures.append(err)

        try:
            p.begin_transaction()
            for r in records:
                _produce(p, r, on_delivery)
            if offsets:
                tps = [
                    ck.TopicPartition(t, part, c.offset, metadata=c.metadata)
                    for (t, part), c in offsets.items()
                ]
                p.send_offsets_to_transaction(tps, group_metadata, timeout)
            p.commit_transaction(timeout)
        except ck.KafkaException as exc:
            err: ck.KafkaError = exc.args[0]
            if err.fatal() or err.txn_requires_abort() or not err.retriable():
                _abort_and_raise(p, timeout, exc)
            _retry_commit(p, timeout, err)
        if failures:
            # commit_transaction succeeds only if every record was delivered; be loud anyway.
            raise TransactionAbortedError(f"records not delivered: {failures[0].str()}")

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await self._call(producer.flush, 10.0)
        self._lane.close()


class Lane:
    """One daemon thread that runs the calls given to it in order.

    Like a one-thread ``ThreadPoolExecutor``, but a call stuck inside librdkafka
    cannot keep the process from exiting (an executor's threads are joined at exit).
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Any] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._calls.put((fut, fn))
        return fut

    def close(self) -> None:
        """End the thread once the calls already given have run."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller that awaits it
                fut.set_exception(exc)


def _produce(p: ck.Producer, r: OutRecord, on_delivery: Any) -> None:
    while True:
        try:
            p.produce(
                r.topic,
                key=r.key,
                value=r.value,
                headers=cast(Any, r.headers),
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            p.poll(0.01)


def _raise_if_fatal(exc: ck.KafkaException, what: str) -> None:
    err: ck.KafkaError = exc.args[0]
    if err.fatal():
        raise ProducerFencedError(f"{what}: {err.str()}", code=err.code()) from exc


def _abort_and_raise(p: ck.Producer, timeout: float, exc: ck.KafkaException) -> NoReturn:
    """Abort the open transaction (unless the producer is fenced) and say it was aborted."""
    _raise_if_fatal(exc, "transaction")
    try:
        p.abort_transaction(timeout)
    except ck.KafkaException as abort_exc:
        _raise_if_fatal(abort_exc, "abort")
        log.warning("abort of transaction failed: %s", abort_exc.args[0].str())
    err: ck.KafkaError = exc.args[0]
    raise TransactionAbortedError(
        f"transaction aborted: {err.str()}", code=err.code(), retriable=True
    ) from exc


def _retry_commit(p: ck.Producer, timeout: float, first: ck.KafkaError) -> None:
    """A retriable commit error (a timeout): the outcome is unknown until a commit succeeds."""
    log.warning("transaction commit: %s; retrying", first.str())
    try:
        p.commit_transaction(timeout)
    except ck.KafkaException as exc:
        _abort_and_raise(p, timeout, exc)
