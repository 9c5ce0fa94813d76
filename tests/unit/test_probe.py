"""A readiness probe whose client stopped answering renews it and is ready again.

After a network cut librdkafka can keep a dead coordinator cached, so every
group request of that client goes unanswered (confluentinc/librdkafka#5511);
only a new client answers. Here the "client" is a flag the check reads.
"""

from __future__ import annotations

import asyncio

import confluent_kafka as ck

from services.core.breakdown import Breakdown
from services.core.errors import KafkaError, KafkaUnavailableError
from services.core.kafka.probe import Probe, workers_in_group


class Client:
    """Answers until it is broken; a broken client never answers (or raises), a renewed one does."""

    def __init__(self, broken: str = "") -> None:
        self.broken, self.renewals = broken, 0

    def renew(self) -> None:
        self.renewals += 1
        self.broken = ""

    async def check(self) -> str | None:
        if self.broken == "hangs":
            await asyncio.Event().wait()
        if self.broken == "raises":
            raise KafkaUnavailableError("no broker answered")
        return None


async def test_a_check_past_its_deadline_renews_the_client_and_the_next_run_is_ready() -> None:
    client = Client("hangs")
    probe = Probe("workers", client.check, timeout_s=0.05, renew=client.renew)

    assert await probe.check_now() == "workers: unreachable: no answer in 0s"
    assert probe.unreachable and client.renewals == 1

    assert await probe.check_now() is None
    assert await probe.readiness() is None and not probe.unreachable


async def test_a_check_that_raises_renews_the_client() -> None:
    client = Client("raises")
    probe = Probe("kafka", client.check, renew=client.renew)

    assert await probe.check_now() == "kafka: unreachable: no broker answered"
    assert client.renewals == 1
    assert await probe.check_now() is None


async def test_while_its_client_is_renewed_a_probe_already_says_why_it_is_unreachable() -> None:
    client = Client("raises")
    seen: list[tuple[bool, str | None]] = []

    def renew() -> None:  # what a submission refused meanwhile reads
        seen.append((probe.unreachable, probe.reason()))
        client.renew()

    probe = Probe("kafka", client.check, renew=renew)
    await probe.check_now()
    assert seen == [(True, "kafka: unreachable: no broker answered")]


async def test_an_answer_that_says_something_is_missing_keeps_the_client() -> None:
    client = Client()

    async def missing() -> str:
        return "no worker in group 'workers'"

    probe = Probe("workers", missing, renew=client.renew)
    assert await probe.check_now() == "workers: no worker in group 'workers'"
    assert not probe.unreachable and client.renewals == 0


async def test_without_a_client_to_renew_a_probe_keeps_checking() -> None:
    client = Client("hangs")
    probe = Probe("kafka", client.check, timeout_s=0.05)
    assert await probe.check_now() == "kafka: unreachable: no answer in 0s"
    assert await probe.check_now() == "kafka: unreachable: no answer in 0s"


async def test_a_broken_client_is_renewed_once_per_interval_and_a_failed_renew_survived() -> None:
    client = Client("raises")
    renewals: list[int] = []

    def renew() -> None:
        renewals.append(1)
        raise RuntimeError("cannot make a client now")

    probe = Probe("kafka", client.check, renew=renew)
    for _ in range(3):
        assert await probe.check_now() == "kafka: unreachable: no broker answered"
    assert renewals == [1]  # within RENEW_EVERY_S of the first
    client.broken = ""
    assert await probe.check_now() is None


async def test_a_check_that_fails_unexpectedly_reports_the_breakdown_not_a_frozen_answer() -> None:
    async def buggy() -> str | None:
        raise ValueError("a bug in the check")

    breakdown = Breakdown()
    probe = Probe("workers", buggy, interval_s=0.01)
    probe.start(breakdown)
    try:
        async with asyncio.timeout(5.0):
            while breakdown.reason is None:
                await asyncio.sleep(0.01)
        assert breakdown.reason == "the workers probe stopped: ValueError('a bug in the check')"
    finally:
        await probe.stop()


class GroupReader:
    """An admin whose group reads answer from a script: a count, or a librdkafka error code."""

    def __init__(self, *answers: int | KafkaError) -> None:
        self.answers = list(answers)

    async def group_member_count(self, group: str, timeout: float = 5.0) -> int:
        answer = self.answers.pop(0)
        if isinstance(answer, KafkaError):
            raise answer
        return answer


async def test_a_partial_answer_about_the_workers_keeps_the_last_one() -> None:
    partial = KafkaError("list groups: some brokers did not answer", code=ck.KafkaError._PARTIAL)
    down = KafkaError("no broker answered", code=ck.KafkaError._TRANSPORT)
    admin = GroupReader(2, partial, 0, partial, down)
    probe = Probe("workers", workers_in_group(admin, "g"))  # type: ignore[arg-type]
    assert await probe.check_now() is None
    assert await probe.check_now() is None and not probe.unreachable  # one broker was down
    assert await probe.check_now() == "workers: no worker in group 'g'"
    assert await probe.check_now() == "workers: no worker in group 'g'"
    assert (await probe.check_now() or "").startswith("workers: unreachable")
