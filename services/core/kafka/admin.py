"""Topic and cluster administration: create topics (harmless twice), look at groups."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from services.core.errors import KafkaUnavailableError
from services.core.kafka.common import TopicSpec, _rdkafka_log, error_from, retry_transient
from services.core.kafka.consumer import committed_or_raise
from services.core.kafka.groups import GroupMember, assigned_partitions, state_name

log = logging.getLogger(__name__)

# Deprecated in favour of describe_consumer_groups, which is what can abort us (groups.py).
LIST_GROUPS_DEPRECATED = r"list_groups\(\) is deprecated"
warnings.filterwarnings("ignore", LIST_GROUPS_DEPRECATED, DeprecationWarning)


class Admin:
    """Topic and cluster administration."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "logger": _rdkafka_log,
            "error_cb": self._on_error,
            **overrides,
        }
        self._admin = AdminClient(self._config)
        self._offset_readers: dict[str, ck.Consumer] = {}
        self.refused: str | None = None
        """The brokers' last refusal of our credentials (SASL or TLS), until one answers."""

    def _on_error(self, err: ck.KafkaError) -> None:
        if err.code() in (ck.KafkaError._AUTHENTICATION, ck.KafkaError._SSL):
            self.refused = err.str()

    def renew(self) -> None:
        """Replace the client with a fresh one, for when the old one stopped answering.

        After a broker restart librdkafka can keep a dead group coordinator cached
        and time out every group request to it (confluentinc/librdkafka#5511); a
        new client looks its coordinators up again. Calls in flight finish on the old one.
        """
        self._admin = AdminClient(self._config)
        self._offset_readers = {}

    def _offset_reader(self, group: str) -> ck.Consumer:
        """A consumer of ``group`` that never subscribes (so never joins it), kept per group,
        to read what the group committed."""
        reader = self._offset_readers.get(group)
        if reader is None:
            config = {**self._config, "group.id": group, "enable.auto.commit": False}
            reader = self._offset_readers[group] = ck.Consumer(config)
        return reader

    async def committed(
        self, group: str, tps: list[ck.TopicPartition], timeout: float = 5.0
    ) -> dict[tuple[str, int], int]:
        """What ``group`` committed per (topic, partition); negative where it committed nothing.

        Read by a consumer of the group, not the admin API: librdkafka's
        ListConsumerGroupOffsets dereferences a missing group handle when the
        coordinator answers NOT_COORDINATOR (as it does while a new group's
        coordinator loads, or after it moved) and the process dies of SIGSEGV
        (confluentinc/librdkafka#5040, open; seen here with librdkafka 2.16.0 in a
        worker at start-up). A consumer's group handle looks the coordinator up again.
        """
        reader = self._offset_reader(group)

        # A new group's first answer is often NOT_COORDINATOR: transient, asked again.
        found = await retry_transient(
            f"offsets of group {group}",
            timeout,
            lambda: asyncio.to_thread(committed_or_raise, reader, tps, timeout),
        )
        return {(tp.topic, tp.partition): tp.offset for tp in found}

    async def topics(self, timeout: float = 5.0) -> dict[str, int]:
        """Existing topics → partition count. Raises ``KafkaUnavailableError`` if none answers."""
        try:
            md = await asyncio.to_thread(self._admin.list_topics, timeout=timeout)
        except ck.KafkaException as exc:
            self._admin.poll(0)  # serve error callbacks: a refusal says more than "no answer"
            if self.refused is not None:
                raise KafkaUnavailableError(f"the brokers refused us: {self.refused}") from exc
            raise KafkaUnavailableError(f"no broker answered: {exc}") from exc
        self.refused = None
        return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}

    async def ensure_topics(self, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        existing = await self.topics(timeout=timeout)
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout,
        )
        created = []
        for name, fut in futures.items():
            try:
                await asyncio.wrap_future(fut)
                created.append(name)
            except ck.KafkaException as exc:
                err = exc.args[0]
                if err.code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise error_from(err, f"create topic {name}") from exc
        if created:
            log.info("created topics %s", ", ".join(sorted(created)))
        return created

    async def group_member_count(self, group: str, timeout: float = 5.0) -> int:
        """How many consumers are in ``group`` now (0 if it does not exist)."""
        return len((await self.describe_group(group, timeout))[1])

    async def describe_group(
        self, group: str, timeout: float = 5.0
    ) -> tuple[str, list[GroupMember]]:
        """The group's state (``"STABLE"``, ``"EMPTY"``, ``"DEAD"`` if unknown…) and its
        members with the partitions each holds.

        Read with the brokers' ListGroups/DescribeGroups (``groups.py`` says why not
        ``describe_consumer_groups``); no answer in ``timeout`` raises ``KafkaError``.
        """
        admin = self._admin
        try:
            found = await asyncio.to_thread(_list_group, admin, group, timeout)
        except ck.KafkaException as exc:
            raise error_from(exc.args[0], f"describe group {group}") from exc
        if not found:
            return "DEAD", []
        desc = found[0]
        if desc.error is not None and desc.error.code() != ck.KafkaError.NO_ERROR:
            raise error_from(desc.error, f"describe group {group}")
        members = [
            GroupMember(
                client_id=m.client_id,
                host=m.client_host.lstrip("/"),
                member_id=m.id,
                partitions=_partitions_or_none(m.assignment),
            )
            for m in desc.members
        ]
        return state_name(desc.state), members

    async def delete_topics(self, names: list[str], timeout: float = 30.0) -> None:
        if not names:
            return
        for name, fut in self._admin.delete_topics(names, operation_timeout=timeout).items():
            try:
                await asyncio.wrap_future(fut)
            except ck.KafkaException as exc:
                if exc.args[0].code() != ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise error_from(exc.args[0], f"delete topic {name}") from exc

    async def end_offsets(
        self, topic: str, partitions: int, timeout: float = 10.0
    ) -> dict[int, int]:
        """Per partition, the last stable offset: where a ``read_committed`` reader's live end is.

        Unlike the high watermark it never lies inside an open transaction, so a
        reader told to stop there is never left waiting for a transaction to end.
        Transient errors (a new topic's leaders not elected yet) are retried.
        """
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        tps = [ck.TopicPartition(topic, p) for p in range(partitions)]

        async def ask() -> dict[int, int]:
            futures = self._admin.list_offsets(
                dict.fromkeys(tps, latest),
                isolation_level=ck.IsolationLevel.READ_COMMITTED,
                request_timeout=timeout,
            )
            return {
                tp.partition: (await asyncio.wrap_future(f)).offset for tp, f in futures.items()
            }

        return await retry_transient(f"end offsets of {topic}", timeout, ask)

    async def group_lag(
        self, group: str, partitions: dict[str, int], timeout: float = 5.0
    ) -> dict[str, int]:
        """Per topic: records not yet consumed by ``group`` (end offset - committed)."""
        lag = dict.fromkeys(partitions, 0)
        for (topic, _), behind in (await self.partition_lag(group, partitions, timeout)).items():
            lag[topic] += behind
        return lag

    async def partition_lag(
        self, group: str, partitions: dict[str, int], timeout: float = 5.0
    ) -> dict[tuple[str, int], int]:
        """Per (topic, partition): records not yet consumed by ``group`` (end offset -
        committed; from the partition's start where the group committed nothing)."""
        tps = [ck.TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        latest, earliest = OffsetSpec.latest(), OffsetSpec.earliest()  # type: ignore[no-untyped-call]

        async def bounds() -> tuple[dict[Any, int], dict[Any, int]]:
            ends_futs = self._admin.list_offsets(
                dict.fromkeys(tps, latest), request_timeout=timeout
            )
            starts_futs = self._admin.list_offsets(
                dict.fromkeys(tps, earliest), request_timeout=timeout
            )
            ends = {tp: (await asyncio.wrap_future(f)).offset for tp, f in ends_futs.items()}
            starts = {tp: (await asyncio.wrap_future(f)).offset for tp, f in starts_futs.items()}
            return ends, starts

        (ends, starts), done = await asyncio.gather(
            retry_transient(f"offsets for the lag of group {group}", timeout, bounds),
            self.committed(group, tps, timeout),
        )
        lag: dict[tuple[str, int], int] = {}
        for tp in tps:
            key = (tp.topic, tp.partition)
            start = done.get(key, -1)
            if start < 0:
                start = starts[tp]
            lag[key] = max(0, ends[tp] - start)
        return lag


def _list_group(admin: AdminClient, group: str, timeout: float) -> list[Any]:
    return list(admin.list_groups(group=group, timeout=timeout))


def _partitions_or_none(assignment: bytes | None) -> dict[str, list[int]]:
    try:
        return assigned_partitions(assignment)
    except ValueError:
        log.warning("a group member's assignment is not the consumer protocol's; shown empty")
        return {}
