"""The analytics sink: ``tokenrelay.lifecycle`` → ClickHouse ``job_events`` and ``jobs``.

A consumer of its own group (``TOKENRELAY_ANALYTICS_GROUP``) reads every record
of the lifecycle topic (``services.core.lifecycle``: a job's events but its
tokens, of which only a few progress ticks, skipped here), ``read_committed``;
each partition's records collect into a batch (``batching.py``), which is
flushed in a fixed order: commit the intent, insert the rows under the batch's
deduplication token, commit the batch's end. Any failure of Kafka or ClickHouse
ends the session: the consumer is closed, and a new one resumes from the
committed offsets after a pause, repeating an unfinished batch exactly (the
inserts deduplicate).

A ``jobs`` row needs what the job's ``queued`` and ``started`` events said.
Those usually came through this sink moments before and are remembered until the
job ends; otherwise (a restart, a long job) they are read back from ``job_events``,
where every earlier batch of the partition already is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from typing import Any

import orjson

from schemas.dead_letter import DeadLetter
from schemas.rules import TERMINAL_STATUS
from services.analytics.batching import Batch, PartitionBuffer, intent_note
from services.analytics.clickhouse import ClickHouse
from services.analytics.rows import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    Columns,
    JobContext,
    decode_lifecycle,
    event_row,
    job_row,
)
from services.core.errors import ClickHouseError, DecodeError, KafkaError
from services.core.ids import now_us
from services.core.kafka import Committed, Consumer, KafkaClients, Producer, Record, TopicPartition
from services.core.metrics import (
    SINK_FLUSH_SECONDS,
    SINK_LAG,
    SINK_RECORDS,
    SINK_REPLAYED_BATCHES,
    SINK_RESTARTS,
    SINK_ROWS,
)
from services.core.serde import encode
from services.core.settings import Settings

log = logging.getLogger(__name__)

POLL_RECORDS = 10_000
REMEMBERED_JOBS = 200_000
"""Contexts of running jobs kept in memory; beyond that the oldest are read back when needed."""
RESTART_PAUSE_S = (0.5, 10.0)
LAG_EVERY_S = 2.0


class Sink:
    """The runner: start, stop (flushes what it holds), and whether it is ready."""

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        clickhouse: ClickHouse,
        clients: KafkaClients | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or KafkaClients.of(settings)
        self.topic = settings.topics.lifecycle
        self.dlq = settings.topics.dlq
        self.producer = producer
        self.ch = clickhouse
        self.contexts: OrderedDict[str, JobContext] = OrderedDict()
        self.buffers: dict[TopicPartition, PartitionBuffer] = {}
        self._changes: deque[tuple[str, Any]] = deque()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._assigned = False
        self._problem: str | None = "not started"

    def ready_reason(self) -> str | None:
        if self._task is not None and self._task.done():
            return "the analytics sink stopped"
        return self._problem

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="analytics-sink")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        pause = RESTART_PAUSE_S[0]
        while not self._stopping.is_set():
            try:
                await self._session()
            except (KafkaError, ClickHouseError) as exc:
                self._problem = f"analytics sink: {exc}"
                SINK_RESTARTS.inc()
                log.warning("analytics sink restarts in %.1fs after: %s", pause, exc)
            except Exception as exc:  # a bug must not stop the sink for good, nor silently
                self._problem = f"analytics sink: {type(exc).__name__}: {exc}"
                SINK_RESTARTS.inc()
                log.exception("analytics sink restarts in %.1fs after an unexpected error", pause)
            else:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])

    # --- one consumer session ---------------------------------------------------------------

    async def _session(self) -> None:
        self.buffers.clear()
        self._changes.clear()
        self.contexts.clear()  # the batches in flight are read again, with their contexts
        consumer = self.clients.consumer(
            self.settings.analytics_group,
            **{
                "client.id": f"{self.settings.worker_id}-analytics",
                "fetch.wait.max.ms": 100,
                # how soon the group gives a killed sink's partitions to its replacement
                "session.timeout.ms": self.settings.sink_session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.settings.sink_session_timeout_ms // 5),
            },
        )
        async with consumer:
            await consumer.subscribe(
                [self.topic],
                on_assign=lambda c: self._changes.append(("assign", c)),
                on_revoke=lambda tps: self._changes.append(("revoke", tps)),
            )
            next_lag = 0.0
            while not self._stopping.is_set():
                records = await consumer.poll(POLL_RECORDS, timeout=0.2)
                self._apply_changes()
                SINK_RECORDS.inc(len(records))
                now = time.monotonic()
                batches = [b for r in records if (b := self._add(r, now)) is not None]
                batches += [b for buf in self.buffers.values() if (b := buf.due(now)) is not None]
                for batch in batches:
                    await self._flush(consumer, batch)
                if self._assigned:
                    self._problem = None
                if now >= next_lag:
                    SINK_LAG.set(await consumer.lag(list(self.buffers)))
                    next_lag = now + LAG_EVERY_S
            await self._flush_all(consumer)

    def _apply_changes(self) -> None:
        """Rebalances, noted by the consumer thread during ``poll``, applied on the loop."""
        while self._changes:
            kind, arg = self._changes.popleft()
            if kind == "assign":
                self._assign(arg)
            else:
                for tp in arg:
                    self.buffers.pop(tp, None)
                log.info("analytics sink revoked %s", sorted(p for _, p in arg))

    def _assign(self, committed: dict[TopicPartition, Committed]) -> None:
        for (topic, p), c in committed.items():
            buf = PartitionBuffer.assigned(
                topic, p, c, self.settings.sink_batch_records, self.settings.sink_flush_s
            )
            self.buffers[(topic, p)] = buf
            if buf.must_end is not None:
                log.info("%s[%s]: repeating the batch %s-%s", topic, p, c.offset, buf.must_end)
        self._assigned = True
        log.info("analytics sink assigned %s", sorted(p for _, p in committed))

    def _add(self, record: Record, now: float) -> Batch | None:
        buf = self.buffers.get((record.topic, record.partition))
        # A record of a partition revoked meanwhile is left to its next owner.
        return buf.add(record, now) if buf is not None else None

    async def _flush_all(self, consumer: Consumer) -> None:
        """At shutdown: insert and commit what is buffered (an unfinished replay waits)."""
        for buf in list(self.buffers.values()):
            batch = buf.due(float("inf"))
            if batch is not None:
                await self._flush(consumer, batch)

    async def _flush(self, consumer: Consumer, batch: Batch) -> None:
        started = time.monotonic()
        events, jobs = await self._rows(batch)
        tp = (batch.topic, batch.partition)
        if events or jobs:
            await consumer.commit({tp: batch.start}, intent_note(batch.last))
            if events:
                await self.ch.insert("job_events", EVENT_COLUMNS, events.data, batch.token + ":e")
                SINK_ROWS.labels("job_events").inc(len(events))
            if jobs:
                await self.ch.insert("jobs", JOB_COLUMNS, jobs.data, batch.token + ":j")
                SINK_ROWS.labels("jobs").inc(len(jobs))
        await consumer.commit({tp: batch.next_offset})
        if batch.replay:
            SINK_REPLAYED_BATCHES.inc()
            log.info("%s[%s]: batch %s inserted again (deduplicated)", *tp, batch.token)
        SINK_FLUSH_SECONDS.observe(time.monotonic() - started)

    # --- rows ------------------------------------------------------------------------------

    async def _rows(self, batch: Batch) -> tuple[Columns, Columns]:
        events, jobs = Columns(EVENT_COLUMNS), Columns(JOB_COLUMNS)
        unknown: list[tuple[dict[str, Any], Record]] = []
        for record in batch.records:
            try:
                event = decode_lifecycle(record)
            except DecodeError as exc:
                await self._dead_letter(record, exc)
                continue
            if event is None:
                continue
            ctx = self._learn(event)
            events.append(event_row(event, record, ctx))
            if event["type"] in TERMINAL_STATUS:
                ctx = self.contexts.pop(event["job_id"], None)
                if ctx is None:
                    unknown.append((event, record))
                else:
                    jobs.append(job_row(event, record, ctx))
        if unknown:
            found = await self._read_contexts({e["job_id"] for e, _ in unknown})
            for event, record in unknown:
                jobs.append(job_row(event, record, found.get(event["job_id"], JobContext())))
        return events, jobs

    def _learn(self, event: dict[str, Any]) -> JobContext | None:
        job_id = event["job_id"]
        ctx = self.contexts.get(job_id)
        if event["type"] not in ("queued", "started"):
            return ctx
        if ctx is None:
            ctx = self.contexts[job_id] = JobContext()
            if len(self.contexts) > REMEMBERED_JOBS:
                self.contexts.popitem(last=False)
        ctx.learn(event)
        return ctx

    async def _read_contexts(self, job_ids: set[str]) -> dict[str, JobContext]:
        """Contexts of jobs whose queued/started events came in earlier batches."""
        rows = await self.ch.query(
            "SELECT job_id, payload FROM job_events "
            "WHERE job_id IN {ids:Array(String)} AND type IN ('queued', 'started') "
            "ORDER BY job_id, attempt, seq, type = 'started'",
            {"ids": sorted(job_ids)},
        )
        out: dict[str, JobContext] = {}
        for job_id, payload in rows.rows:
            out.setdefault(job_id, JobContext()).learn(orjson.loads(payload))
        missing = job_ids - out.keys()
        if missing:
            log.warning("no queued event stored for %d jobs, e.g. %s", len(missing), min(missing))
        return out

    async def _dead_letter(self, record: Record, exc: Exception) -> None:
        log.error("poison record at %s sent to %s: %s", record.where(), self.dlq, exc)
        letter = DeadLetter(
            source=record.where(),
            error_kind="undecodable_event",
            error=f"analytics sink: {exc}"[:2000],
            ts=now_us(),
            raw=(record.value or b"").decode("utf-8", "replace")[:100_000],
        )
        await (await self.producer.produce(self.dlq, record.key, encode(letter)))
