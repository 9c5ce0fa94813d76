"""Whether a dependency answers now: checked in the background, read instantly by ``/readyz``.

A readiness probe must answer in well under a second even while Kafka is down,
and a submission must learn at once that Kafka is unreachable rather than wait
for a timeout. So each ``Probe`` runs its check every ``interval_s`` (each run
bounded by ``timeout_s``), keeps the last answer, and logs one line when the
answer changes: when the dependency stops answering and when it answers again.

A check that gets no answer, by an error or by running past its deadline, has its
client renewed (at most every ``RENEW_EVERY_S``, on a worker thread: dropping the
old client waits for its threads): after a network cut librdkafka can keep a dead
coordinator cached and leave every group request to it unanswered
(confluentinc/librdkafka#5511), so a probe that only waited would stay failing
after Kafka is whole again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import confluent_kafka as ck

from services.core.breakdown import Breakdown
from services.core.errors import KafkaError
from services.core.kafka.admin import Admin

log = logging.getLogger(__name__)

RENEW_EVERY_S = 5.0

Check = Callable[[], Awaitable[str | None]]
"""None when all is well, else why not. Raising ``KafkaError`` (or running past the
timeout) means no answer: the dependency is unreachable."""


class Probe:
    def __init__(
        self,
        name: str,
        check: Check,
        interval_s: float = 1.0,
        timeout_s: float = 3.0,
        renew: Callable[[], None] | None = None,
    ):
        self.name = name
        self._check = check
        self._renew = renew
        """Replaces the check's client after a run with no answer."""
        self._renewed_at = float("-inf")
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self._reason: str | None = f"{name}: not checked yet"
        self._failing_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._checked = asyncio.Event()
        self.unreachable = False
        """Whether the last check got no answer at all (it raised or timed out), as opposed
        to an answer that says something is missing."""

    def reason(self) -> str | None:
        """The last answer: None if the check passed."""
        return self._reason

    async def readiness(self) -> str | None:
        """``reason`` as a ``/readyz`` check: instant, whatever the dependency does."""
        return self._reason

    async def check_now(self) -> str | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                reason = await self._check()
            self.unreachable = False
        except TimeoutError:
            reason, self.unreachable = f"unreachable: no answer in {self.timeout_s:.0f}s", True
        except KafkaError as exc:
            reason, self.unreachable = f"unreachable: {exc}", True
        # Recorded before the renewal, which takes a while: meanwhile a submission refused
        # for ``unreachable`` says why (it said "None").
        self._record(f"{self.name}: {reason}" if reason else None)
        if self.unreachable:
            await self._renew_client()
        return self._reason

    async def _renew_client(self) -> None:
        now = time.monotonic()
        if self._renew is None or now - self._renewed_at < RENEW_EVERY_S:
            return
        self._renewed_at = now
        try:
            await asyncio.to_thread(self._renew)
        except Exception:  # a probe that stopped would freeze readiness
            log.warning("%s: renewing the client failed", self.name, exc_info=True)

    def _record(self, reason: str | None) -> None:
        now = time.monotonic()
        first = not self._checked.is_set()
        was_ok = self._reason is None
        self._reason = reason
        self._checked.set()
        if first:
            if reason is not None:
                log.warning("%s", reason)
                self._failing_since = now
        elif reason is None and not was_ok:
            since = self._failing_since or now
            log.info("%s: answering again after %.1fs", self.name, now - since)
            self._failing_since = None
        elif reason is not None and was_ok:
            log.warning("%s", reason)
            self._failing_since = now

    async def run(self) -> None:
        """Check every ``interval_s`` until cancelled."""
        while True:
            await self.check_now()
            await asyncio.sleep(self.interval_s)

    def start(self, breakdown: Breakdown) -> None:
        """Check until stopped; a check that raises anything but a Kafka error or a timeout
        (a bug) would freeze readiness at its last answer, so it is reported instead."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"probe {self.name}")
            breakdown.watch(self._task, f"the {self.name} probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def kafka_answers(admin: Admin, expected_topics: set[str]) -> Check:
    """Kafka answers a metadata request, and every topic exists."""

    async def check() -> str | None:
        existing = await admin.topics(timeout=2.0)
        missing = expected_topics - existing.keys()
        return f"topics missing: {', '.join(sorted(missing))}" if missing else None

    return check


def workers_in_group(admin: Admin, group: str) -> Check:
    """Jobs can run only while some worker is in the workers' group.

    The group is read from every broker (``groups.py``); when one of several does
    not answer (``_PARTIAL``: a broker down, the group's coordinator elsewhere), the
    last answer stands rather than a healthy group reading as unreachable.
    """
    last: list[str | None] = [f"no answer yet about group {group!r}"]

    async def check() -> str | None:
        try:
            members = await admin.group_member_count(group, timeout=2.0)
        except KafkaError as exc:
            if exc.code == ck.KafkaError._PARTIAL:
                return last[0]
            raise
        last[0] = None if members else f"no worker in group {group!r}"
        return last[0]

    return check
