"""Reading a consumer group's members from the brokers' own bytes."""

from __future__ import annotations

import struct

import pytest

from services.core.kafka.groups import assigned_partitions, state_name

# What a broker returned for a range-assigned member of topic t1 (3 partitions),
# read with confluent-kafka's list_groups against a real broker.
REAL = b"\x00\x00\x00\x00\x00\x01\x00\x02t1\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00"  # noqa: E501


def assignment(version: int, topics: dict[str, list[int]], user_data: bytes = b"") -> bytes:
    out = struct.pack(">hi", version, len(topics))
    for topic, parts in topics.items():
        name = topic.encode()
        out += struct.pack(">h", len(name)) + name
        out += struct.pack(f">i{len(parts)}i", len(parts), *parts)
    return out + struct.pack(">i", len(user_data)) + user_data


def test_a_real_assignment_reads_as_its_partitions() -> None:
    assert assigned_partitions(REAL) == {"t1": [0, 1, 2]}


def test_several_topics_sorted_and_user_data_skipped() -> None:
    raw = assignment(3, {"jobs.normal": [2, 0], "control": [1]}, user_data=b"\x00sticky")
    assert assigned_partitions(raw) == {"control": [1], "jobs.normal": [0, 2]}


def test_a_member_between_assignments_holds_nothing() -> None:
    assert assigned_partitions(b"") == {}
    assert assigned_partitions(None) == {}
    assert assigned_partitions(assignment(0, {})) == {}


@pytest.mark.parametrize("cut", [3, 8, 12, len(REAL) - 8])
def test_cut_bytes_are_refused(cut: int) -> None:
    with pytest.raises(ValueError, match="consumer-protocol"):
        assigned_partitions(REAL[:cut])


def test_state_names_are_the_admin_apis() -> None:
    assert state_name("Stable") == "STABLE"
    assert state_name("PreparingRebalance") == "PREPARING_REBALANCE"
    assert state_name("CompletingRebalance") == "COMPLETING_REBALANCE"
    assert state_name("") == "DEAD"
