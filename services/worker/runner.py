"""The worker's consume loop: many jobs in flight, offsets committed only behind finished jobs.

Order of work for each command: decode it (a poison record goes to the DLQ),
run the attempt through its provider while every event is produced to
``tokenrelay.tokens``, wait until all of the attempt's events are confirmed,
and only then mark the offset finished. After each poll the loop commits, per
partition, the lowest offset still running (``OffsetTracker``), so a crash
re-delivers every job that had not ended and skips none. Intake pauses while
``concurrency`` jobs run; the loop keeps polling, so a long stream never
costs the consumer its place in the group.
"""

from __future__ import annotations

import asyncio
import logging

from schemas.commands import JobCommand
from schemas.dead_letter import DeadLetter
from schemas.events import ErrorKind, Failed, JobEvent
from services.core.errors import DecodeError, KafkaError
from services.core.ids import now_us
from services.core.kafka import Consumer, Delivered, Producer, Record, TopicPartition
from services.core.metrics import JOBS_FINISHED, JOBS_RUNNING, POISON_RECORDS, TOKENS_PRODUCED
from services.core.serde import decode, encode
from services.core.settings import Settings
from services.worker.attempt import AttemptEvents, run_attempt
from services.worker.offsets import OffsetTracker
from services.worker.providers.base import Provider

log = logging.getLogger(__name__)


class WorkerRunner:
    def __init__(
        self, settings: Settings, producer: Producer, providers: dict[str, Provider]
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.providers = providers
        self.topics = settings.topics
        self.tracker = OffsetTracker()
        self.joined = asyncio.Event()
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._paused = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._consumer = Consumer(
            self.settings.kafka_bootstrap,
            self.settings.worker_group,
            **{
                "client.id": self.settings.worker_id,
                "fetch.wait.max.ms": 50,
                "partition.assignment.strategy": "cooperative-sticky",
            },
        )
        await self._consumer.start()

        def on_assign(tps: list[TopicPartition]) -> None:
            loop.call_soon_threadsafe(self._assigned, tps)

        def on_revoke(tps: list[TopicPartition]) -> None:
            loop.call_soon_threadsafe(self.tracker.forget, tps)

        await self._consumer.subscribe(
            self.topics.jobs_by_priority(), on_assign=on_assign, on_revoke=on_revoke
        )
        self._task = asyncio.create_task(self._loop(), name="worker-loop")
        log.info(
            "worker %s consuming %s",
            self.settings.worker_id,
            ", ".join(self.topics.jobs_by_priority()),
        )

    def _assigned(self, tps: list[TopicPartition]) -> None:
        self.joined.set()
        if tps:
            log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in tps))

    async def _loop(self) -> None:
        assert self._consumer is not None
        while not self._stopping:
            free = self.settings.worker_concurrency - len(self._jobs)
            await self._set_paused(free <= 0)
            records = await self._consumer.poll(max_records=max(free, 1), timeout=0.1)
            for record in records:
                self.tracker.started((record.topic, record.partition), record.offset)
                task = asyncio.create_task(self._handle(record), name=f"job@{record.where()}")
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)
            await self._commit()

    async def _set_paused(self, paused: bool) -> None:
        assert self._consumer is not None
        if paused == self._paused:
            return
        assignment = await self._consumer.assignment()
        if paused:
            await self._consumer.pause(assignment)
        else:
            await self._consumer.resume(assignment)
        self._paused = paused

    async def _commit(self) -> None:
        assert self._consumer is not None
        offsets = self.tracker.committable()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit failed (%s); the jobs behind it will run again", exc)
            return
        self.tracker.mark_committed(offsets)

    async def _handle(self, record: Record) -> None:
        tp = (record.topic, record.partition)
        try:
            command = decode(JobCommand, record.value)
        except DecodeError as exc:
            await self._dead_letter(record, exc)
            self.tracker.finished(tp, record.offset)
            return
        JOBS_RUNNING.inc()
        try:
            terminal = await self._run(command, record)
        except KafkaError:
            log.exception("job %s: events not confirmed; left for redelivery", command.job_id)
            return
        finally:
            JOBS_RUNNING.dec()
        self.tracker.finished(tp, record.offset)
        JOBS_FINISHED.labels(terminal.type, command.provider).inc()

    async def _run(self, command: JobCommand, record: Record) -> JobEvent:
        log.info(
            "job %s attempt %d started from %s", command.job_id, command.attempt, record.where()
        )
        deliveries: list[asyncio.Future[Delivered]] = []
        tokens = TOKENS_PRODUCED.labels(command.provider)

        async def emit(event: JobEvent) -> None:
            if event.type == "token":
                tokens.inc()
            deliveries.append(
                await self.producer.produce(self.topics.tokens, command.job_id, encode(event))
            )

        provider = self.providers.get(command.provider)
        if provider is None:
            terminal: JobEvent = Failed(
                **AttemptEvents(command, self.settings.worker_id).fields(),
                error_kind=ErrorKind.INVALID_REQUEST,
                retryable=False,
                message=f"provider {command.provider!r} is not configured on this worker",
            )
            await emit(terminal)
        else:
            terminal = await run_attempt(command, provider, emit, self.settings.worker_id)
        await asyncio.gather(*deliveries)
        log.info("job %s attempt %d %s", command.job_id, command.attempt, terminal.type)
        return terminal

    async def _dead_letter(self, record: Record, exc: DecodeError) -> None:
        POISON_RECORDS.labels(record.topic).inc()
        log.error("poison record at %s sent to %s: %s", record.where(), self.topics.dlq, exc)
        letter = DeadLetter(
            source=record.where(),
            error_kind="decode",
            error=str(exc),
            ts=now_us(),
            raw=(record.value or b"").decode("utf-8", errors="replace"),
        )
        await self.producer.send(self.topics.dlq, record.key, encode(letter))

    async def stop(self, grace_s: float = 25.0) -> None:
        """Stop intake, let running jobs end within ``grace_s``, commit, close."""
        self._stopping = True
        if self._task is not None:
            await self._task
        if self._jobs:
            log.info("waiting up to %.0fs for %d running jobs", grace_s, len(self._jobs))
            _, pending = await asyncio.wait(self._jobs, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._consumer is not None:
            await self._commit()
            await self._consumer.close()
            self._consumer = None
        for provider in self.providers.values():
            await provider.close()
        log.info("worker %s stopped", self.settings.worker_id)
