"""The committed offsets a rebalance hands to ``on_assign``: asked again while the group's
coordinator settles, and never read as "nothing committed" when the lookup failed.

The sink's exactly-once rests on it: a commit carries the note of a batch being
inserted, and a lookup error taken for "no commit" would forget that batch's
intent. The lookup runs inside librdkafka's rebalance callback, whose exception
``poll`` raises to the caller (tried against a real broker: the assignment
stands and consumption goes on), so it must be an error the callers handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import confluent_kafka as ck
import pytest

from services.core.errors import ConsumeError
from services.core.kafka.consumer import committed_in_callback


@dataclass
class Found:
    """A partition as ``committed`` answers it (librdkafka's own cannot be built with an error)."""

    topic: str
    partition: int
    offset: int
    metadata: str
    error: ck.KafkaError | None


class Answers:
    """Stands in for ``ck.Consumer.committed``: each call gives the next scripted answer."""

    def __init__(self, *answers: ck.KafkaError | int) -> None:
        self.answers = list(answers)
        self.calls = 0

    def committed(self, tps: list[ck.TopicPartition], timeout: float) -> Any:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, ck.KafkaError):
            return [Found(tp.topic, tp.partition, -1001, "", answer) for tp in tps]
        return [Found(tp.topic, tp.partition, answer, "sink/1 through=9", None) for tp in tps]


TPS = [ck.TopicPartition("lifecycle", 2)]


def test_a_coordinator_still_loading_is_asked_again() -> None:
    loading = ck.KafkaError(ck.KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
    c = Answers(loading, loading, 7)
    (tp,) = committed_in_callback(c, TPS, timeout=5)  # type: ignore[arg-type]
    assert (tp.offset, tp.metadata, c.calls) == (7, "sink/1 through=9", 3)


def test_a_lasting_or_final_error_is_a_consume_error_not_an_empty_commit() -> None:
    denied = ck.KafkaError(ck.KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(ConsumeError, match="committed offsets"):
        committed_in_callback(Answers(denied), TPS, timeout=5)  # type: ignore[arg-type]
    loading = ck.KafkaError(ck.KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
    with pytest.raises(ConsumeError):
        committed_in_callback(Answers(*[loading] * 50), TPS, timeout=0.3)  # type: ignore[arg-type]
