"""A consumer group as the brokers describe it, read without the admin API's group calls.

librdkafka's admin requests that wait for a group coordinator
(``describe_consumer_groups``, ``list_consumer_group_offsets``) can abort the
process: when such a request times out while its coordinator lookup is still
in flight, the lookup's answer finds its request gone and an assertion fails
(``rd_kafka_enq_once_del_source_return: eonce->refcnt > 0``, seen in the public
face with librdkafka 2.16.0 during a network cut, from the workers probe's
``describe_consumer_groups`` every 2 s). The older ``rd_kafka_list_groups`` asks
every broker and drops answers that come after its deadline, so the workers'
group is read with it. It returns members' assignments as the consumer
protocol's bytes; ``assigned_partitions`` reads them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GroupMember:
    client_id: str
    host: str
    member_id: str
    partitions: dict[str, list[int]] = field(default_factory=dict)
    """topic → the partitions assigned to this member, sorted."""


def state_name(state: str) -> str:
    """The broker's state name as the admin API spells it: ``PreparingRebalance`` →
    ``PREPARING_REBALANCE``; an unknown group is ``DEAD``."""
    if not state:
        return "DEAD"
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", state).upper()


def assigned_partitions(assignment: bytes | None) -> dict[str, list[int]]:
    """The partitions in a consumer-protocol ``Assignment`` (any version: version,
    then ``[topic: string, partitions: [int32]]``, then user data, which is skipped).

    Empty for no bytes (a member between assignments); ``ValueError`` for bytes
    that are not an assignment.
    """
    if not assignment:
        return {}
    try:
        pos = 2  # int16 version
        (topics,) = struct.unpack_from(">i", assignment, pos)
        pos += 4
        found: dict[str, list[int]] = {}
        for _ in range(max(topics, 0)):
            (size,) = struct.unpack_from(">h", assignment, pos)
            pos += 2
            raw = assignment[pos : pos + size]
            if len(raw) != size:
                raise ValueError("not a consumer-protocol assignment: a topic name is cut")
            topic = raw.decode()
            pos += size
            (count,) = struct.unpack_from(">i", assignment, pos)
            pos += 4
            parts = struct.unpack_from(f">{max(count, 0)}i", assignment, pos)
            pos += 4 * max(count, 0)
            found.setdefault(topic, []).extend(parts)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a consumer-protocol assignment: {exc}") from exc
    return {t: sorted(ps) for t, ps in sorted(found.items())}
