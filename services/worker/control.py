"""Every worker follows ``tokenrelay.jobs.control`` from its start, outside the group.

The topic is small (one record per instruction), so each worker reads all of it
at startup and then live into a ``ControlRegistry``: an instruction given while
a job is queued is known to whichever worker dequeues the job later, and a
running job's stream is closed by the worker that runs it within one poll
(~100 ms). The worker is not ready until it has read the topic up to the end it
found at start.

What the registry answers, for a command about to run or running:

* cancelled? — by a ``Cancel`` of its job or a ``CancelBatch`` of its batch whose
  ``ts`` is at or after the command's ``submitted_at`` (so an admin retry,
  submitted later, runs although the job was cancelled once);
* held? — its batch is paused: the latest of the batch's ``PauseBatch`` and
  ``ResumeBatch`` in topic order (one partition per batch) is a pause.

Cancelling beats holding: a paused batch's held jobs end ``cancelled`` as soon
as the batch is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from pydantic import ValidationError

from schemas.commands import JobCommand
from schemas.control import Cancel, CancelBatch, Control, PauseBatch, ResumeBatch, parse_control
from services.core.breakdown import Breakdown
from services.core.kafka import KafkaClients, Record
from services.core.kafka.follower import PartitionFollower

log = logging.getLogger(__name__)

REMEMBERED = 200_000
"""Instructions of each kind kept in memory (the least recently given forgotten first)."""

K = TypeVar("K")
V = TypeVar("V")


class Action(StrEnum):
    """What to do with a fetched job now."""

    RUN = "run"
    HOLD = "hold"
    CANCEL = "cancel"


def applies(cancel: Cancel | CancelBatch | None, command: JobCommand) -> bool:
    """Whether ``cancel`` stops ``command``: it was given at or after the submission."""
    return cancel is not None and cancel.ts >= command.submitted_at


def decide(cancel: Cancel | CancelBatch | None, paused: bool) -> Action:
    """Cancel beats hold; a job neither cancelled nor paused runs."""
    if cancel is not None:
        return Action.CANCEL
    return Action.HOLD if paused else Action.RUN


def _remember(store: OrderedDict[K, V], key: K, value: V) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > REMEMBERED:
        store.popitem(last=False)


@dataclass(eq=False)
class Watch:
    """A running command, and the event set once it is cancelled."""

    command: JobCommand
    event: asyncio.Event = field(default_factory=asyncio.Event)


class ControlRegistry:
    """Every instruction read so far; pure in-memory state, no Kafka here.

    ``version`` grows with every instruction, so that the runner re-examines its
    held jobs only when something changed.
    """

    def __init__(self) -> None:
        self._cancels: OrderedDict[str, Cancel] = OrderedDict()
        self._batch_cancels: OrderedDict[str, CancelBatch] = OrderedDict()
        self._paused: OrderedDict[str, PauseBatch] = OrderedDict()
        self._watches: set[Watch] = set()
        self.version = 0

    def __len__(self) -> int:
        return len(self._cancels) + len(self._batch_cancels) + len(self._paused)

    def add(self, control: Control) -> None:
        self.version += 1
        if isinstance(control, Cancel):
            if _newer(control, self._cancels.get(control.job_id)):
                _remember(self._cancels, control.job_id, control)
        elif isinstance(control, CancelBatch):
            if _newer(control, self._batch_cancels.get(control.batch_id)):
                _remember(self._batch_cancels, control.batch_id, control)
        elif isinstance(control, PauseBatch):
            _remember(self._paused, control.batch_id, control)
        elif isinstance(control, ResumeBatch):
            self._paused.pop(control.batch_id, None)
        for watch in self._watches:
            if not watch.event.is_set() and self.cancel_for(watch.command) is not None:
                watch.event.set()

    def cancel_for(self, command: JobCommand) -> Cancel | CancelBatch | None:
        """The instruction that cancels ``command``, if any (the job's own first)."""
        cancel = self._cancels.get(command.job_id)
        if applies(cancel, command):
            return cancel
        if command.batch_id is not None:
            batch_cancel = self._batch_cancels.get(command.batch_id)
            if applies(batch_cancel, command):
                return batch_cancel
        return None

    def paused(self, batch_id: str | None) -> bool:
        return batch_id is not None and batch_id in self._paused

    def action(self, command: JobCommand) -> Action:
        return decide(self.cancel_for(command), self.paused(command.batch_id))

    def watch(self, command: JobCommand) -> Watch:
        """Watch a running command: its event is set when it is cancelled (at once if it was)."""
        watch = Watch(command)
        if self.cancel_for(command) is not None:
            watch.event.set()
        self._watches.add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        self._watches.discard(watch)


def _newer(new: Cancel | CancelBatch, old: Cancel | CancelBatch | None) -> bool:
    """Keep the latest cancel: it covers every command an earlier one covers."""
    return old is None or new.ts >= old.ts


def _describe(control: Control) -> str:
    if isinstance(control, Cancel):
        return f"job {control.job_id} cancel"
    return f"batch {control.batch_id} {control.type.removesuffix('_batch')}"


class ControlListener:
    def __init__(
        self, clients: KafkaClients, topic: str, registry: ControlRegistry, name: str
    ) -> None:
        self.topic = topic
        self.registry = registry
        self._follower = PartitionFollower(
            clients, f"tokenrelay-control-{name}", "control topic", self._apply, self._caught_up
        )
        self.caught_up = self._follower.caught_up

    async def start(self, partitions: int, breakdown: Breakdown) -> None:
        await self._follower.start(((self.topic, p) for p in range(partitions)), breakdown)

    def _caught_up(self) -> None:
        log.info("control topic read: %d instructions known", len(self.registry))

    def _apply(self, rec: Record) -> None:
        if rec.value is None:
            log.error("empty control record at %s", rec.where())
            return
        try:
            control = parse_control(rec.value)
        except ValidationError as exc:
            log.error("undecodable control record at %s: %s", rec.where(), exc)
            return
        self.registry.add(control)
        if self.caught_up.is_set():
            log.info("%s received by=%s at %s", _describe(control), control.by, rec.where())

    async def stop(self) -> None:
        await self._follower.stop()
