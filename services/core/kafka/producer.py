"""The idempotent producer (``acks=all``, ``enable.idempotence``, ``murmur2_random``).

A background thread polls it; each ``produce`` returns an asyncio future that
the delivery callback completes on the loop (``produce_all``: one future for
many records). Deliveries reported together are
settled together: the callbacks queue their results and the loop is woken once
per run of them, not once per record (a worker streaming 30,000 tokens/s would
otherwise wake it 30,000 times). A record is durable once its future resolves;
a failed delivery raises ``DeliveryError``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

import confluent_kafka as ck

from services.core.errors import DeliveryError, KafkaError
from services.core.kafka.common import (
    PRODUCER_DEFAULTS,
    Delivered,
    _rdkafka_log,
    coordinates,
    error_from,
)

Outgoing = tuple[str, str | bytes | None, bytes, list[tuple[str, bytes]] | None]
"""A record to produce: topic, key, value, headers."""

YIELD_EVERY = 500
"""Records ``produce_all`` hands to librdkafka between two yields to the event loop."""


class Producer:
    """The idempotent producer, as an async context manager that flushes on exit."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "logger": _rdkafka_log,
            **PRODUCER_DEFAULTS,
            **overrides,
        }
        self._producer: ck.Producer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settled: deque[tuple[asyncio.Future[Any], Any]] = deque()
        self._wake_scheduled = False

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._producer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._producer = ck.Producer(self._config)
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll_forever, name="producer-poll", daemon=True
        )
        self._poller.start()

    def _poll_forever(self) -> None:
        assert self._producer is not None
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Delivered]:
        """Hand a record to librdkafka; the returned future resolves on delivery."""
        if self._producer is None:
            self.start()
        assert self._producer is not None and self._loop is not None
        loop = self._loop
        fut: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(err: ck.KafkaError | None, msg: ck.Message) -> None:
            if err is not None:
                result: Delivered | KafkaError = error_from(
                    err, f"delivery to {topic}", DeliveryError
                )
            else:
                result = Delivered(*coordinates(msg))
            self._settle_later(fut, result)

        await self._produce(topic, key, value, headers, on_delivery, partition)
        return fut

    async def produce_all(
        self, records: Sequence[Outgoing], yield_every: int = YIELD_EVERY
    ) -> list[Delivered]:
        """Produce every record; once the brokers acknowledged them all, where each landed.

        One future for the lot instead of one per record: each delivery fills its
        record's slot and the last one settles it, so a batch of thousands costs one
        wake of the loop and no ``gather``. Raises the first failed delivery's
        ``DeliveryError`` once every record is reported. Yields to the loop every
        ``yield_every`` records, so a big batch never stalls the process's streams.
        """
        if not records:
            return []
        if self._producer is None:
            self.start()
        assert self._loop is not None
        n = len(records)
        slots: list[Delivered | KafkaError | None] = [None] * n
        done: asyncio.Future[Any] = self._loop.create_future()
        reported = itertools.count(1)

        def on_delivery(i: int, err: ck.KafkaError | None, msg: ck.Message) -> None:
            if err is not None:
                slots[i] = error_from(err, f"delivery to {msg.topic()}", DeliveryError)
            else:
                slots[i] = Delivered(*coordinates(msg))
            if next(reported) == n:  # itertools.count: one step at a time in any thread
                self._settle_later(done, slots)

        for i, (topic, key, value, headers) in enumerate(records):
            await self._produce(topic, key, value, headers, functools.partial(on_delivery, i))
            if i % yield_every == yield_every - 1:
                await asyncio.sleep(0)
        await done
        for slot in slots:
            if isinstance(slot, KafkaError):
                raise slot
        return cast("list[Delivered]", slots)

    async def _produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Callable[[ck.KafkaError | None, ck.Message], None],
        partition: int | None = None,
    ) -> None:
        """Hand one record to librdkafka, waiting while its queue is full."""
        assert self._producer is not None
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                await asyncio.sleep(0.005)
            except ck.KafkaException as exc:
                raise error_from(exc.args[0], f"produce to {topic}", DeliveryError) from exc

    def _settle_later(self, fut: asyncio.Future[Any], result: Any) -> None:
        """From the poll thread: have the loop complete ``fut`` with ``result`` (an error
        raises), together with every other delivery reported meanwhile."""
        assert self._loop is not None
        self._settled.append((fut, result))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._settle_all)

    async def send(self, topic: str, key: str | bytes | None, value: bytes | None) -> Delivered:
        """Produce one record and wait until the brokers acknowledged it."""
        return await (await self.produce(topic, key, value))

    async def flush(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        left = await asyncio.to_thread(self._producer.flush, timeout)
        if left:
            raise DeliveryError(f"{left} records not delivered within {timeout}s")

    async def close(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            await self.flush(timeout)
        finally:
            self._stop.set()
            if self._poller is not None:
                await asyncio.to_thread(self._poller.join)
            self._producer = None

    def _settle_all(self) -> None:
        """On the loop: complete every queued delivery.

        The flag is lowered before the queue is emptied, so a delivery queued
        meanwhile either is taken now or schedules another run.
        """
        self._wake_scheduled = False
        settled = self._settled
        while settled:
            fut, result = settled.popleft()
            if fut.done():
                continue
            if isinstance(result, KafkaError):
                fut.set_exception(result)
            else:
                fut.set_result(result)
