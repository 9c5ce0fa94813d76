from __future__ import annotations

import pytest

from services.core.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # Kafka's own UtilsTest vectors for Utils.murmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_in_range_and_stable() -> None:
    for i in range(200):
        p = partition_for(f"job-{i}", 7)
        assert 0 <= p < 7
        assert p == partition_for(f"job-{i}".encode(), 7)
