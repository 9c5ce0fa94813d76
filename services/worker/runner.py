"""The worker's loop: fetch by priority, run many jobs at once, settle each exactly once.

One consumer in the group ``workers`` reads the four job topics and the retry
topic. Fetched commands wait in a ``ReadyQueue`` (retries first wait in a
``DelayQueue`` until their ``not_before``, holding no slot); whenever a slot is
free the most important one starts, the tenants of a priority taking turns by
weight, and a tenant at its concurrency cap waiting (``scheduling``; the
tenants' weights and caps are read from ``TenantPolicies`` at each start, and
a fleet-wide cap is split by partitions owned, ``fleet_share.local_cap``).
Topics whose priority has enough buffered work above it are paused, so an
urgent job is fetched the moment it lands while lows wait in Kafka; a priority
with nothing better waiting reads ahead up to ``TOKENRELAY_WORKER_READAHEAD``
jobs, so one tenant's backlog does not hide another's jobs behind it. The loop
polls every 50 ms whatever runs, so a 30-minute stream never costs the
consumer its place in the group.

A job's life here: rate-limit budget → start mark committed (``committer.sync``)
→ ``started`` and tokens on the idempotent producer → every token confirmed →
the terminal event, or the retry command, or the DLQ letter, published in one
transaction with the job's offset (``committer``). Offsets are tracked per
partition by ``offsets.OffsetLedger``: out-of-order completion never skips a job,
and a job that ended under a previous owner is not run twice.

Cancellation and batch pauses come from ``tokenrelay.jobs.control``
(``control``). A job of a paused batch is held when it is fetched or comes up to
run: it takes no slot, emits nothing, and its offset stays open (uncommitted)
until the batch resumes — it then rejoins the ready queue in priority order —
or the batch (or the job) is cancelled, which settles it ``cancelled`` at once.
Held jobs of revoked partitions are dropped unsettled, like queued ones. On SIGTERM
the worker stops fetching, gives running jobs ``worker_grace_s`` to end, hands
the rest back (their start marks are committed, so the next owner runs them as
a new attempt), commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from schemas.commands import JobCommand
from schemas.dead_letter import DeadLetter
from schemas.events import Completed, ErrorKind, JobEvent, Token
from schemas.jobs import Priority
from services.core import tracing
from services.core.breakdown import Breakdown
from services.core.errors import DecodeError
from services.core.ids import now_us
from services.core.kafka import (
    Committed,
    Delivered,
    KafkaClients,
    OutRecord,
    Producer,
    Record,
    TopicPartition,
)
from services.core.lifecycle import copy_headers, event_records
from services.core.metrics import (
    DEAD_LETTERS,
    JOBS_FINISHED,
    JOBS_RUNNING,
    POISON_RECORDS,
    QUEUE_WAIT,
    RATE_LIMIT_WAIT,
    TOKENS_PRODUCED,
)
from services.core.prices import Prices, load_prices, prompt_tokens
from services.core.quotas import remaining_usd
from services.core.serde import decode, encode
from services.core.settings import Settings
from services.core.tenancy import SpendBook, TenantPolicies, utc_day
from services.core.tracing import Headers
from services.worker.attempt import queue_since_us, run_attempt
from services.worker.budget import BudgetMeter, Unabsorbed, meter_for
from services.worker.committer import Committer, NotOwnedError
from services.worker.control import Action, ControlListener, ControlRegistry
from services.worker.events import AttemptEvents, unreadable_command
from services.worker.fleet_share import FleetShare, local_cap
from services.worker.offsets import OffsetLedger
from services.worker.providers.base import Provider
from services.worker.rate_limit import RateLimiter
from services.worker.scheduling import DelayQueue, HeldJobs, ReadyQueue
from services.worker.settlement import RetryPolicy, settlement
from services.worker.ticks import ProgressTicks

log = logging.getLogger(__name__)

POLL_S = 0.05
MAX_DELAYED = 10_000
"""Retries held in memory before the retry topic is paused."""


@dataclass(frozen=True, slots=True)
class Job:
    tp: TopicPartition
    offset: int
    where: str
    command: JobCommand
    priority: Priority
    trace: Context | None = None
    """The submitter's trace context, from the command's record headers (when traced)."""


class WorkerRunner:
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        providers: dict[str, Provider],
        prices: Prices | None = None,
        clients: KafkaClients | None = None,
        tenants: TenantPolicies | None = None,
    ) -> None:
        clients = clients or KafkaClients.of(settings)
        self.settings = settings
        self.producer = producer
        self.providers = providers
        self.prices = prices or load_prices(settings.prices)
        self.topics = settings.topics
        self.concurrency = settings.worker_concurrency
        self.readahead = settings.worker_readahead
        self.tenants = tenants if tenants is not None else TenantPolicies()
        self.breakdown = Breakdown()
        """Told when the loop stops for good (the process's own, from ``service.create``)."""
        self.joined = asyncio.Event()
        self.ledger = OffsetLedger()
        self.ready: ReadyQueue[Job] = ReadyQueue(settings.priority_aging_s)
        self.delayed: DelayQueue[Job] = DelayQueue()
        self.held: HeldJobs[Job] = HeldJobs()
        self.controls = ControlRegistry()
        self._reviewed = self.controls.version
        self.limiter = RateLimiter(settings.model_limits, share=None)
        subscribed = [*self.topics.jobs_by_priority(), self.topics.retry]
        self._partitions = len(subscribed) * settings.topic_partitions
        """Every partition the group shares, for splitting a tenant's fleet-wide cap."""
        # Only a worker with budgets to share reads the group's backlog.
        self.fleet_share = (
            FleetShare(
                clients.admin(),
                settings.worker_group,
                dict.fromkeys(subscribed, settings.topic_partitions),
                self.ledger.owned,
                self.limiter,
            )
            if self.limiter.limited
            else None
        )
        self._priority_of = {self.topics.jobs[p]: p for p in Priority}
        self._retry_policy = RetryPolicy(settings.retry_base_s, settings.retry_max_s)
        self.control = ControlListener(
            clients, self.topics.control, self.controls, settings.worker_id
        )
        self._txn = clients.transactional(f"{self.topics.prefix}.worker.{settings.worker_id}")
        self._consumer = clients.consumer(
            settings.worker_group,
            **{
                "client.id": settings.worker_id,
                "fetch.wait.max.ms": 50,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": settings.worker_session_timeout_ms,
                "heartbeat.interval.ms": max(500, settings.worker_session_timeout_ms // 5),
            },
        )
        self.committer = Committer(self._txn, self.ledger, self._consumer.group_metadata)
        self._paused: set[TopicPartition] = set()
        self._running: dict[asyncio.Task[None], Job] = {}
        self._per_tenant: Counter[str] = Counter()
        """Jobs holding a slot, by tenant: what a tenant's cap is checked against."""
        self._settling: set[asyncio.Task[None]] = set()
        """Tasks that only settle a cancelled job: they hold no slot."""
        self._side: set[asyncio.Task[None]] = set()
        self.spend = SpendBook()
        """What each tenant has spent (``tokenrelay.spend``): the budgets' mid-stream stops."""
        self._meters: dict[str, list[BudgetMeter]] = {}
        """The running attempts' budget meters, by tenant."""
        self._ended = Unabsorbed()
        """Costs of budgeted jobs that ended here, until ``spend`` shows them."""
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._share_task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self._txn.start()
        self.committer.start(self.breakdown)
        await self.control.start(self.settings.topic_partitions, self.breakdown)
        await self._consumer.start()

        def on_assign(committed: dict[TopicPartition, Committed]) -> None:
            loop.call_soon_threadsafe(self._on_assigned, committed)

        def on_revoke(tps: list[TopicPartition]) -> None:
            # Block the consumer thread until the loop forgot these partitions: no start
            # mark or settlement for them may be committed once they are given away.
            asyncio.run_coroutine_threadsafe(self._revoke(tps), loop).result(timeout=30)

        def on_lost(tps: list[TopicPartition]) -> None:
            loop.call_soon_threadsafe(self.joined.clear)  # out of the group until it rejoins
            on_revoke(tps)

        topics = [*self.topics.jobs_by_priority(), self.topics.retry]
        await self._consumer.subscribe(
            topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost
        )
        self._task = asyncio.create_task(self._loop(), name="worker-loop")
        self.breakdown.watch(self._task, "the worker loop")
        if self.fleet_share is not None:
            self._share_task = asyncio.create_task(self.fleet_share.run(), name="budget-share")
            self.breakdown.watch(self._share_task, "the budget share")
        log.info(
            "worker %s consuming %s, concurrency %d",
            self.settings.worker_id,
            ", ".join(topics),
            self.concurrency,
        )

    def ready_reason(self) -> str | None:
        if self._task is not None and self._task.done() and not self._stopping:
            exc = None if self._task.cancelled() else self._task.exception()
            return f"the worker loop stopped: {exc!r}"
        if not self.joined.is_set():
            return "the worker has not joined its group yet"
        if not self.control.caught_up.is_set():
            return "the worker is still reading the control topic"
        return self.committer.stalled_reason()

    async def stop(self) -> None:
        """Stop intake, let running jobs end within the grace period, hand back the rest."""
        self._stopping = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        grace = self.settings.worker_grace_s
        if self._running:
            log.info("waiting up to %.0fs for %d running jobs", grace, len(self._running))
            await asyncio.wait(list(self._running), timeout=grace)
        if self._running:
            log.info("handing back %d jobs", len(self._running))
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
        await asyncio.gather(*self._side, return_exceptions=True)
        if self._share_task is not None:
            self._share_task.cancel()
            await asyncio.gather(self._share_task, return_exceptions=True)
        await self.committer.stop()
        await self.control.stop()
        await self._consumer.close()
        await self._txn.close()
        for provider in self.providers.values():
            await provider.close()
        log.info("worker %s stopped", self.settings.worker_id)

    # --- group membership ------------------------------------------------------------------

    def _on_assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        for tp, c in committed.items():
            self.ledger.assign(tp, c.offset, c.metadata)
        self.joined.set()
        if self.fleet_share is not None:
            self.fleet_share.poke()
        if committed:
            log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in sorted(committed)))

    async def _revoke(self, tps: list[TopicPartition]) -> None:
        gone = set(tps)
        for tp in gone:
            self.ledger.revoke(tp)
        self._paused -= gone
        self.ready.discard(lambda job: job.tp in gone)
        self.delayed.discard(lambda job: job.tp in gone)
        self.held.discard(lambda job: job.tp in gone)
        if self.fleet_share is not None:
            self.fleet_share.poke()
        moved = [t for t, job in self._running.items() if job.tp in gone]
        for task in moved:
            task.cancel()
        if tps:
            log.info(
                "revoked %s; %d running jobs handed back",
                ", ".join(f"{t}[{p}]" for t, p in sorted(gone)),
                len(moved),
            )

    # --- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            await self._apply_pauses()
            room = self.ready.fetch_room(self.concurrency, self.readahead, self._below_cap())
            room = max(1, min(100, room))
            for record in await self._consumer.poll(max_records=room, timeout=POLL_S):
                self._intake(record)
            now = now_us()
            for due in self.delayed.due(now):
                self._enqueue(due)
            self._review_controls()
            self._start_ready(now)
        await self._apply_pauses()

    def _start_ready(self, now: int) -> None:
        """Fill the free slots from the ready queue, each tenant below its cap."""
        may_start = self._below_cap()
        while self._busy_slots() < self.concurrency and (
            job := self.ready.pop(now, may_start=may_start, weight=self.tenants.weight)
        ):
            if self.controls.action(job.command) is Action.HOLD:
                self._hold(job)
            else:
                self._launch(job)

    def _below_cap(self) -> Callable[[str], bool]:
        """Whether a tenant may start one more job here: its fleet-wide cap, split by the
        partitions this worker owns, above what it runs here now."""
        owned = len(self.ledger.owned())

        def may_start(tenant: str) -> bool:
            cap = self.tenants.max_concurrency(tenant)
            if cap is None:
                return True
            return self._per_tenant[tenant] < local_cap(cap, owned, self._partitions)

        return may_start

    def _wanted_paused(self) -> set[TopicPartition]:
        if self._stopping:
            return self.ledger.owned()
        fetchable = self.ready.fetchable(self.concurrency, self.readahead, self._below_cap())
        out = set()
        for tp in self.ledger.owned():
            priority = self._priority_of.get(tp[0])
            held_back = (
                priority not in fetchable
                if priority is not None
                else len(self.delayed) >= MAX_DELAYED
            )
            if held_back or self.ledger.crowded(tp):
                out.add(tp)
        return out

    async def _apply_pauses(self) -> None:
        wanted = self._wanted_paused()
        if to_pause := wanted - self._paused:
            await self._consumer.pause(to_pause)
        if to_resume := self._paused - wanted:
            await self._consumer.resume(to_resume)
        self._paused = wanted

    def _intake(self, record: Record) -> None:
        tp = (record.topic, record.partition)
        if not self.ledger.fetched(tp, record.offset):
            log.info("record %s ended under a previous owner; skipped", record.where())
            return
        try:
            command = decode(JobCommand, record.value)
        except DecodeError as exc:
            self._spawn(self._dead_letter_poison(record, exc))
            return
        priority = self._priority_of.get(record.topic, command.request.priority)
        job = Job(
            tp, record.offset, record.where(), command, priority, tracing.extract(record.headers)
        )
        if command.not_before is not None and command.not_before > now_us():
            self.delayed.push(job, command.not_before)
        else:
            self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        """A job that may run now: to the ready queue, held while its batch is paused, or
        settled ``cancelled`` at once (that takes no provider, so it waits for no slot)."""
        action = self.controls.action(job.command)
        if action is Action.CANCEL:
            self._launch(job, slot=False)
        elif action is Action.HOLD:
            self._hold(job)
        else:
            self.ready.push(job, job.priority, queue_since_us(job.command), job.command.tenant)

    def _hold(self, job: Job) -> None:
        assert job.command.batch_id is not None
        self.held.hold(job.command.batch_id, job)
        log.info(
            "job %s of batch %s held at %s: the batch is paused",
            job.command.job_id,
            job.command.batch_id,
            job.where,
        )

    def _review_controls(self) -> None:
        """After a new instruction: settle waiting jobs it cancelled, release the resumed ones."""
        if self.controls.version == self._reviewed:
            return
        self._reviewed = self.controls.version

        def cancelled(job: Job) -> bool:
            return self.controls.cancel_for(job.command) is not None

        for job in [*self.ready.discard(cancelled), *self.delayed.discard(cancelled)]:
            self._launch(job, slot=False)
        released = self.held.release(lambda j: self.controls.action(j.command) is Action.HOLD)
        for job in released:
            if self.controls.action(job.command) is Action.RUN:
                log.info(
                    "job %s released: batch %s resumed", job.command.job_id, job.command.batch_id
                )
            self._enqueue(job)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _launch(self, job: Job, *, slot: bool = True) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job {job.command.job_id}")
        self._running[task] = job
        if slot:
            self._per_tenant[job.command.tenant] += 1
        else:
            self._settling.add(task)
        task.add_done_callback(self._finished)

    def _busy_slots(self) -> int:
        return len(self._running) - len(self._settling)

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._running.pop(task, None)
        if task in self._settling:
            self._settling.discard(task)
        elif job is not None:
            self._per_tenant[job.command.tenant] -= 1
            if not self._per_tenant[job.command.tenant]:
                del self._per_tenant[job.command.tenant]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("job task failed", exc_info=exc)

    # --- one job ---------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        attempt = job.command.attempt + self.ledger.prior_starts(job.tp, job.offset)
        command = job.command.model_copy(update={"attempt": attempt})
        job_id = command.job_id
        attributes: dict[str, str | int] = {
            "tokenrelay.job_id": job_id,
            "tokenrelay.attempt": attempt,
            "tokenrelay.provider": command.provider,
            "tokenrelay.model": command.model,
        }
        span = tracing.TRACER.start_span(
            "run job", context=job.trace, kind=SpanKind.CONSUMER, attributes=attributes
        )
        try:
            # every event of the attempt carries its span, for the gateway to continue
            headers = tracing.inject(trace.set_span_in_context(span))
            terminal = await self._attempt(job, command, headers)
            if terminal is None:
                return
            span.set_attribute("tokenrelay.outcome", terminal.type)
            records = settlement(self.topics, self._retry_policy, job.where, command, terminal)
            if headers:
                records = [replace(r, headers=headers) for r in records]
            await self.committer.settle(job.tp, job.offset, records)
        except NotOwnedError:
            log.info("job %s: %s moved to another worker before it settled", job_id, job.where)
            return
        except asyncio.CancelledError:
            # Unsettled: the start mark is committed, so the next owner runs a new attempt.
            log.info("job %s attempt %d handed back", job_id, attempt)
            span.set_attribute("tokenrelay.outcome", "handed back")
            raise
        finally:
            span.end()
        JOBS_FINISHED.labels(terminal.type, command.provider).inc()
        log.info("job %s attempt %d %s", job_id, attempt, terminal.type)

    async def _attempt(
        self, job: Job, command: JobCommand, headers: Headers | None
    ) -> JobEvent | None:
        """Run the attempt; the terminal event, or None when the job is no longer ours."""
        events = AttemptEvents(command, self.settings.worker_id)
        cancel = self.controls.cancel_for(command)
        if cancel is not None:
            log.info("job %s was cancelled while queued; not started", command.job_id)
            return events.cancelled(cancel)
        if command.attempt > command.request.max_attempts:
            return events.failed(
                ErrorKind.INTERNAL,
                f"the job's worker was lost {command.attempt - 1} times",
                retryable=False,
            )
        provider = self.providers.get(command.provider)
        if provider is None:
            return events.failed(
                ErrorKind.INVALID_REQUEST,
                f"provider {command.provider!r} is not configured on this worker",
                retryable=False,
            )
        estimate = _estimated_tokens(command)
        waited = await self.limiter.acquire(command.model, estimate)
        if waited:
            RATE_LIMIT_WAIT.labels(command.model).inc(waited)
        self.ledger.started(job.tp, job.offset)
        await self.committer.sync()
        if not self.ledger.owns(job.tp):
            return None
        QUEUE_WAIT.labels(job.priority.value).observe(
            max(0, now_us() - queue_since_us(command)) / 1e6
        )
        log.info("job %s attempt %d started from %s", command.job_id, command.attempt, job.where)
        terminal = await self._stream(command, provider, headers)
        if isinstance(terminal, Completed):
            self.limiter.settle(
                command.model,
                estimate,
                terminal.usage.prompt_tokens + terminal.usage.completion_tokens,
            )
        return terminal

    async def _stream(
        self, command: JobCommand, provider: Provider, headers: Headers | None
    ) -> JobEvent:
        deliveries: list[asyncio.Future[Delivered]] = []
        tokens = TOKENS_PRODUCED.labels(command.provider)
        job_id, topics = command.job_id, self.topics
        ticks = ProgressTicks(self.settings.progress_tick_s)

        async def emit(event: JobEvent) -> None:
            value = encode(event)
            stored = await self.producer.produce(topics.tokens, job_id, value, headers=headers)
            deliveries.append(stored)
            if isinstance(event, Token):
                tokens.inc()
                if not ticks.due(event):
                    return
                copy = headers
            else:  # ``started``: its copy names where a late watcher starts reading
                copy = copy_headers(headers, (await stored).offset)
            deliveries.append(
                await self.producer.produce(topics.lifecycle, job_id, value, headers=copy)
            )

        meter = self._budget_meter(command)
        watch = self.controls.watch(command)
        JOBS_RUNNING.inc()
        try:
            terminal = await run_attempt(
                command,
                provider,
                emit,
                self.settings.worker_id,
                watch.event,
                lambda: self.controls.cancel_for(command),
                self.prices,
                meter,
            )
            await asyncio.gather(*deliveries)
        finally:
            self.controls.unwatch(watch)
            if meter is not None:
                running = self._meters[command.tenant]
                running.remove(meter)
                if not running:
                    del self._meters[command.tenant]
            JOBS_RUNNING.dec()
        if meter is not None:
            cost = getattr(terminal, "cost_usd", None)
            _, month = utc_day(now_us())
            spent = self.spend.spent(command.tenant, now_us())
            self._ended.add(command.tenant, Decimal(repr(cost or 0.0)), spent.usd_month, month)
        return terminal

    def _budget_meter(self, command: JobCommand) -> BudgetMeter | None:
        """What this attempt may spend of its tenant's budget (``budget.py``), or None."""
        tenant = command.tenant
        limits = self.tenants.limits(tenant)
        if limits.budget_usd_per_day is None and limits.budget_usd_per_month is None:
            return None
        now = now_us()
        month = utc_day(now)[1]
        running = self._meters.setdefault(tenant, [])

        def others() -> Decimal:
            """What the tenant's other jobs here spent: running, or ended and not yet in
            the spend figure."""
            spent = sum((m.spent() for m in running if m is not meter), Decimal(0))
            if not self._ended.holds(tenant):
                return spent
            month_now = self.spend.spent(tenant, now_us()).usd_month
            return spent + self._ended.pending(tenant, month_now, month)

        meter = meter_for(
            command, remaining_usd(limits, self.spend.spent(tenant, now)), self.prices, others
        )
        if meter is not None:
            running.append(meter)
        return meter

    async def _dead_letter_poison(self, record: Record, exc: DecodeError) -> None:
        POISON_RECORDS.labels(record.topic).inc()
        DEAD_LETTERS.labels("poison").inc()
        letter = DeadLetter(
            source=record.where(),
            error_kind="decode",
            error=str(exc),
            ts=now_us(),
            raw=(record.value or b"").decode("utf-8", errors="replace"),
        )
        out = [OutRecord(self.topics.dlq, record.key, encode(letter))]
        failed = unreadable_command(record.key, record.value, str(exc), self.settings.worker_id)
        if failed is not None:
            out += event_records(self.topics, failed.job_id, encode(failed))
        log.error(
            "poison record at %s sent to %s%s: %s",
            record.where(),
            self.topics.dlq,
            f"; job {failed.job_id} failed" if failed is not None else "",
            exc,
        )
        try:
            await self.committer.settle((record.topic, record.partition), record.offset, out)
        except NotOwnedError:
            log.info("poison record at %s moved to another worker", record.where())


def _estimated_tokens(command: JobCommand) -> int:
    """Prompt characters / 4 plus ``max_tokens``: the reservation against a token budget."""
    return prompt_tokens(command.request) + (command.request.max_tokens or 0)
