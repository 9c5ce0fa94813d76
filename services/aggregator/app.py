"""The Faust app: ``tokenrelay.lifecycle`` in, the jobs table and ``tokenrelay.job-state`` out.

One agent reduces every lifecycle record (``services.core.lifecycle``: every
event of a job but its tokens, of which only progress ticks) into the ``jobs``
table (key ``job_id``, changelog-backed, co-partitioned with the lifecycle topic
and so with the tokens: a job's state lives on the partition number of its
events), so the work per job does not grow with its tokens. A record's
``tokens-offset`` header, when present, is where the job's stream starts. A
second agent follows the batch instructions on ``tokenrelay.jobs.control``
into the small ``batch-flags`` table (is a batch paused). Each stored state is
also published to the compacted ``tokenrelay.job-state``; a job removed by
retention leaves a tombstone there.

Offsets are committed at least once, after the broker acknowledged the
changelog writes they caused (``transport``); the reducer makes a replayed
event a no-op, and the derived figures in ``index`` are rebuilt from the table,
so a crash neither loses nor double-counts anything. After a crash or a
rebalance, reads wait until the events past the last commit are replayed
(``catch_up``): a state once answered never goes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from pydantic import ValidationError

from schemas.control import Cancel, CancelBatch, PauseBatch, ResumeBatch, parse_control
from schemas.dead_letter import DeadLetter
from schemas.events import parse_event
from schemas.state import JobState
from services.aggregator import catch_up, transport
from services.aggregator.index import JobIndex
from services.aggregator.processor import JobStates, decode_state, encode_state
from services.core.ids import now_us
from services.core.kafka import RECORD_LIMIT_BYTES, KafkaClients
from services.core.kafka.probe import Probe, kafka_answers
from services.core.kafka.security import sasl_login, ssl_context
from services.core.lifecycle import tokens_offset
from services.core.metrics import (
    AGGREGATOR_EVENTS,
    AGGREGATOR_STATE_WRITES,
    DEAD_LETTERS,
    POISON_RECORDS,
)
from services.core.serde import encode
from services.core.settings import Settings

log = logging.getLogger(__name__)

RETENTION_SWEEP_S = 60.0
_APPLIED = AGGREGATOR_EVENTS.labels("applied")
_DUPLICATE = AGGREGATOR_EVENTS.labels("duplicate")


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The settings' Kafka security in Faust's terms: the same SASL login and TLS context
    as every librdkafka client of tokenrelay (``services/core/kafka/security.py``)."""
    context = ssl_context(settings)
    login = sasl_login(settings)
    if login is not None:
        return faust.SASLCredentials(
            username=login.username,
            password=login.password,
            mechanism=login.mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 4 * 1024 * 1024,
}
"""Each table partition's RocksDB: ≤ 8 MiB of memtables and an 8 MiB block cache, so an
instance's memory is bounded (two tables x its partitions x ~16 MiB) rather than by Faust's
defaults (3 memtables of 64 MiB and a 2 GiB block cache per partition). Memtables filling
are most of the aggregator's RSS growth in a soak: with 256 KiB memtables it flattened to
~0.4 MB/min within 6 minutes, against ~1.4 MB/min with 4 MiB (docs/performance.md)."""


def _headers(headers: Any) -> list[tuple[str, bytes]]:
    """A Faust message's headers (a mapping or pairs, by version) as pairs."""
    if not headers:
        return []
    pairs = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), bytes(v or b"")) for k, v in pairs]


class Aggregator:
    """The app, its tables, and what an instance derives from the partitions it owns."""

    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        topics = settings.topics
        scheme = transport.register()
        url = (
            settings.aggregator_advertised_url
            or f"http://{settings.aggregator_host}:{settings.aggregator_port}"
        )
        datadir = (settings.data_dir / "aggregator" / instance).resolve()
        datadir.parent.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            f"{settings.topic_prefix}-aggregator",
            broker=f"{scheme}://{settings.kafka_bootstrap}",
            store=settings.state_store,
            datadir=str(datadir),
            web_host=settings.aggregator_host,
            web_port=settings.aggregator_port,
            canonical_url=url,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.replication_factor,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_max_request_size=RECORD_LIMIT_BYTES,
            consumer_max_fetch_size=RECORD_LIMIT_BYTES,
            autodiscover=False,
            web_enabled=True,
            broker_commit_interval=1.0,
            # Static membership: an instance restarted under the same name takes its
            # partitions back at once instead of waiting for its old session to expire.
            consumer_group_instance_id=f"{settings.topic_prefix}-aggregator-{instance}",
            broker_session_timeout=settings.aggregator_session_timeout_s,
            broker_credentials=faust_credentials(settings),
        )
        # Keys are the ids' UTF-8 bytes, as every other client writes them, so that
        # Faust's partitioner puts a job's state on the partition of its events.
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        raw_topic = raw | {"key_serializer": "raw", "value_serializer": "raw"}
        self.lifecycle = self.app.topic(topics.lifecycle, **raw_topic)
        self.control = self.app.topic(topics.control, **raw_topic)
        self.job_state = self.app.topic(topics.job_state, **raw_topic)
        self.dlq = self.app.topic(topics.dlq, **raw_topic)
        tables: dict[str, Any] = {
            "partitions": settings.topic_partitions,
            "use_partitioner": True,
            # A job's state holds its whole output, as its `completed` event does.
            "extra_topic_configs": {"max.message.bytes": str(RECORD_LIMIT_BYTES)},
        }
        # A copy each: Faust's store pops its own keys from the dict it is given.
        self.jobs = self.app.Table("jobs", **tables, **raw, options=dict(ROCKSDB_OPTIONS))
        self.batch_flags = self.app.Table(
            "batch-flags", **tables, **raw, options=dict(ROCKSDB_OPTIONS)
        )
        self.states = JobStates(self._load, settings.state_tick_s)
        self.index = JobIndex()
        self.applied: dict[int, int] = {}
        """Per partition, the offset of the last event this instance applied."""
        # False from a rebalance until Faust has recovered the tables of the new
        # assignment (``on_rebalance_complete``): only then is the table whole.
        self._settled = False
        self._assignment_changed = True
        self._revoked: set[int] = set()
        # Per owned partition, the last record it held when it was assigned: reads wait
        # until it is applied (``catch_up``). None until known for this assignment.
        self._catch_up: dict[int, int] | None = None
        self._assignments = 0
        self._catch_up_task: asyncio.Future[None] | None = None
        self._clients = KafkaClients.of(settings)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_rebalance_complete.connect(self._on_recovered)
        self.app.agent(self.lifecycle, name="job-events")(self._on_events)
        self.app.agent(self.control, name="batch-control")(self._on_control)
        self.app.timer(RETENTION_SWEEP_S)(self._sweep)
        expected = {topics.lifecycle, topics.control, topics.job_state, topics.dlq}
        admin = self._clients.admin()
        self.kafka = Probe("kafka", kafka_answers(admin, expected), renew=admin.renew)
        self.app.task(self.kafka.run)

    # --- state --------------------------------------------------------------------

    def _load(self, job_id: str) -> bytes | None:
        raw: bytes | None = self.jobs.get(job_id.encode())
        return raw

    def job(self, job_id: str) -> JobState | None:
        return self.states.get(job_id)

    def active_partitions(self) -> set[int]:
        topic = self.lifecycle.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def reached(self) -> dict[int, int]:
        """Per owned partition, the last offset known applied: by this run, or committed
        before it (Faust keeps the committed offsets it sought to on assignment)."""
        topic = self.lifecycle.get_topic_name()
        committed = getattr(self.app.consumer, "_committed_offset", {})
        out = {
            tp.partition: offset - 1
            for tp, offset in committed.items()
            if tp.topic == topic and offset is not None
        }
        for p, offset in self.applied.items():
            out[p] = max(out.get(p, -1), offset)
        return out

    def ready(self) -> bool:
        """Partitions assigned, their tables recovered, and the events their last owner
        may have applied past its last commit replayed: reads are whole, and never older
        than what was answered before a crash or a rebalance."""
        return self._settled and bool(self.active_partitions()) and self._caught_up()

    def _caught_up(self) -> bool:
        if self._catch_up is None:
            return False
        if self._catch_up and catch_up.caught_up(self._catch_up, self.reached()):
            log.info("caught up with partitions %s", sorted(self._catch_up))
            self._catch_up = {}
        return not self._catch_up

    def not_ready_reasons(self) -> list[str]:
        """Why ``/readyz`` says 503: Kafka does not answer, or the reads are not whole."""
        reasons = [r for r in [self.kafka.reason()] if r]
        if not (self._settled and self.active_partitions()):
            reasons.append("recovering the tables of this instance's partitions")
        elif not self._caught_up():
            reasons.append("replaying the events applied before the last commit")
        return reasons

    async def _on_assigned(self, *_args: Any, **_kwargs: Any) -> None:
        self._settled = False
        self._catch_up = None
        self._assignments += 1

    async def _on_revoked(self, *args: Any, **_kwargs: Any) -> None:
        """What memory holds for a revoked partition may be stale when it comes back."""
        revoked: set[Any] = args[1] if len(args) > 1 else set()  # (sender, revoked)
        self._settled = False
        self._catch_up = None
        self._assignments += 1
        topic = self.lifecycle.get_topic_name()
        self._revoked |= {tp.partition for tp in revoked if tp.topic == topic}

    async def _on_recovered(self, *_args: Any, **_kwargs: Any) -> None:
        self._settled = True
        self._assignment_changed = True
        self._catch_up_task = asyncio.ensure_future(self._find_catch_up(self._assignments))

    async def _find_catch_up(self, assignment: int) -> None:
        """Learn the last record of each owned partition, retrying while Kafka does not
        answer; given up once the assignment changes (the next one asks again)."""
        delay = 0.5
        while assignment == self._assignments:
            owned = self.active_partitions()
            try:
                found = await catch_up.targets(
                    self._clients,
                    self.lifecycle.get_topic_name(),
                    self.settings.topic_partitions,
                    owned,
                )
            except Exception as exc:  # Kafka down or slow: ask again
                log.warning("last records of partitions %s not read yet: %s", sorted(owned), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if assignment != self._assignments:
                log.info("partitions reassigned while their last records were read")
                return
            self._catch_up = found
            reached = self.reached()
            log.info(
                "catching up: %s",
                ", ".join(f"[{p}] to {o} (at {reached.get(p, -1)})" for p, o in found.items())
                or "nothing to replay",
            )
            return

    def sync_partitions(self) -> None:
        """Bring the index in line with the partitions this instance owns now."""
        if not (self._settled and self._assignment_changed):
            return
        actives = self.active_partitions()
        gone = (self.index.partitions - actives) | (self._revoked & self.index.partitions)
        self._revoked.clear()
        if gone:
            self.states.forget(gone)
            for p in gone:
                self.index.drop(p)
                self.applied.pop(p, None)
            log.info("partitions %s revoked", sorted(gone))
        new = actives - self.index.partitions
        self._assignment_changed = False
        if not new:
            return
        started = time.perf_counter()
        by_partition: dict[int, list[JobState]] = {p: [] for p in new}
        for raw in self.jobs.values():
            state = decode_state(raw)
            if state.partition in by_partition:
                by_partition[state.partition].append(state)
        for p, states in by_partition.items():
            self.index.rebuild(p, states)
        log.info(
            "partitions %s indexed: %d jobs in %.3fs",
            sorted(new),
            sum(len(s) for s in by_partition.values()),
            time.perf_counter() - started,
        )

    def paused(self, batch_id: str) -> bool:
        return self.batch_flags.get(batch_id.encode()) == b"paused"

    # --- agents -------------------------------------------------------------------

    async def _on_events(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            self.sync_partitions()
            try:
                ev = parse_event(event.value)
            except ValidationError as exc:
                await self._dead_letter(message, exc)
                self.applied[message.partition] = message.offset
                continue
            stream_offset = tokens_offset(_headers(message.headers))
            outcome = self.states.apply(ev, message.partition, stream_offset)
            self.applied[message.partition] = message.offset
            (_APPLIED if outcome.changed else _DUPLICATE).inc()
            if outcome.store:  # every change a brief shows is a lifecycle change, stored
                self.index.put(message.partition, outcome.state)
                await self._store(outcome.state)

    async def _store(self, state: JobState) -> None:
        raw = encode_state(state)
        key = state.job_id.encode()
        self.jobs[key] = raw
        await self.job_state.send(key=key, value=raw)
        AGGREGATOR_STATE_WRITES.inc()
        log.debug("job %s %s (attempt %d)", state.job_id, state.status.value, state.attempt)

    async def _dead_letter(self, message: Any, exc: Exception) -> None:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.error("undecodable event at %s, sent to the DLQ: %s", where, exc)
        POISON_RECORDS.labels(message.topic).inc()
        DEAD_LETTERS.labels("undecodable_event").inc()
        letter = DeadLetter(
            source=where,
            error_kind="undecodable_event",
            error=str(exc)[:2000],
            ts=now_us(),
            raw=bytes(message.value or b"").decode("utf-8", "replace")[:100_000],
        )
        await self.dlq.send(key=message.key, value=encode(letter))

    async def _on_control(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                control = parse_control(event.value)
            except ValidationError:
                continue  # the workers own this topic's poison records; they log them
            key = control.batch_id.encode() if not isinstance(control, Cancel) else None
            if isinstance(control, PauseBatch):
                self.batch_flags[key] = b"paused"
            elif isinstance(control, ResumeBatch | CancelBatch) and key in self.batch_flags:
                del self.batch_flags[key]

    # --- retention ----------------------------------------------------------------

    async def _sweep(self) -> None:
        removed = await self.clean(self.settings.state_retention)
        if removed:
            log.info("retention: removed %d finished jobs", removed)

    async def clean(self, older_than_s: float) -> int:
        """Remove the finished jobs of this instance's partitions older than that."""
        self.sync_partitions()
        cutoff = now_us() - int(older_than_s * 1e6)
        doomed = [
            (p, b.job_id)
            for p, b in self.index.briefs()
            if b.finished_at is not None and b.finished_at <= cutoff
        ]
        for p, job_id in doomed:
            del self.jobs[job_id.encode()]
            self.index.remove(p, job_id)
            await self.job_state.send(key=job_id.encode(), value=None)
        return len(doomed)
