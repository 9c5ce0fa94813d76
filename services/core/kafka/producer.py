"""The idempotent producer (``acks=all``, ``enable.idempotence``, ``murmur2_random``).

A background thread polls it; each ``produce`` returns an asyncio future that
the delivery callback completes on the loop. Deliveries reported together are
settled together: the callbacks queue their results and the loop is woken once
per run of them, not once per record (a worker streaming 30,000 tokens/s would
otherwise wake it 30,000 times). A record is durable once its future resolves;
a failed delivery raises ``DeliveryError``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Self

import confluent_kafka as ck

from services.core.errors import DeliveryError, KafkaError
from services.core.kafka.common import (
    PRODUCER_DEFAULTS,
    Delivered,
    _rdkafka_log,
    coordinates,
    error_from,
)


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
        self._settled: deque[tuple[asyncio.Future[Delivered], Delivered | KafkaError]] = deque()
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
        value: bytes,
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
            self._settled.append((fut, result))
            if not self._wake_scheduled:
                self._wake_scheduled = True
                loop.call_soon_threadsafe(self._settle_all)

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return fut
            except BufferError:
                await asyncio.sleep(0.005)
            except ck.KafkaException as exc:
                raise error_from(exc.args[0], f"produce to {topic}", DeliveryError) from exc

    async def send(self, topic: str, key: str | bytes | None, value: bytes) -> Delivered:
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
