"""Events → ``job_events`` and ``jobs`` rows, as the sink writes them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.events import Completed, Failed, Percentiles, Queued, Started, Token, Usage
from schemas.jobs import Priority
from services.analytics.rows import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    Columns,
    JobContext,
    decode_lifecycle,
    event_row,
    job_row,
    usd,
)
from services.core.errors import DecodeError
from services.core.kafka import Record
from services.core.serde import encode

JOB = "0192f0c4-0000-7000-8000-000000000001"
COMMON = {"job_id": JOB, "worker_id": "w1", "tenant": "acme"}


def record(event: object, offset: int = 5) -> Record:
    return Record("tokens", 2, offset, JOB.encode(), encode(event), 0)  # type: ignore[arg-type]


def queued() -> Queued:
    return Queued(
        **COMMON, attempt=0, seq=0, ts=1_000_000, priority=Priority.HIGH, model="gpt-4o-mini",
        provider="openai", batch_id="b1", estimated_cost_usd=0.000123,
    )


def started(attempt: int = 1) -> Started:
    return Started(
        **COMMON, attempt=attempt, seq=0, ts=2_000_000, model="gpt-4o-mini", provider="openai",
        queue_wait_ms=1000.0,
    )


def completed(text: str = "hello") -> Completed:
    return Completed(
        **COMMON, attempt=1, seq=3, ts=3_000_000, content=text, parsed=None,
        finish_reason="stop", usage=Usage(prompt_tokens=7, completion_tokens=2),
        cost_usd=0.000003105, ttft_ms=250.0, itl_ms=Percentiles(p50=10.0, p90=20.0, p99=30.0),
        duration_ms=900.0, tokens_per_s=3.0, tokens=2,
    )


def test_token_events_are_skipped_and_lifecycle_events_read() -> None:
    tok = Token(**COMMON, attempt=1, seq=1, ts=1, text='"type":"token"', index=1)
    assert decode_lifecycle(record(tok)) is None
    # completed output that contains the text of a token's type is still a completed event
    done = decode_lifecycle(record(completed('{"type":"token"}')))
    assert isinstance(done, Completed) and done.content == '{"type":"token"}'


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        b'{"type": "queued"}',
        None,
        # well-formed JSON whose field ClickHouse would refuse
        encode(queued()).replace(b'"ts":1000000', b'"ts":"yesterday"'),
    ],
)
def test_a_record_that_is_not_an_event_is_a_decode_error(value: bytes | None) -> None:
    with pytest.raises(DecodeError):
        decode_lifecycle(Record("tokens", 0, 1, None, value, 0))


def test_a_finished_job_row_carries_what_its_queued_and_started_events_said() -> None:
    ctx = JobContext()
    for ev in (queued(), started()):
        ctx.learn(ev)
    event = decode_lifecycle(record(completed(), offset=9))
    assert isinstance(event, Completed)
    row = dict(zip(JOB_COLUMNS, job_row(event, record(completed(), offset=9), ctx), strict=True))
    assert row["status"] == "succeeded"
    assert (row["priority"], row["model"], row["provider"], row["batch_id"]) == (
        "high", "gpt-4o-mini", "openai", "b1",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["tokens"]) == (7, 2, 2)
    assert row["cost_usd"] == Decimal("0.000003105")
    assert row["estimated_cost_usd"] == Decimal("0.000123000")
    assert (row["queued_at"], row["started_at"], row["finished_at"]) == (
        1_000_000, 2_000_000, 3_000_000,
    )
    assert row["first_token_at"] == 2_250_000
    assert (row["itl_p50_ms"], row["itl_p90_ms"], row["itl_p99_ms"]) == (10.0, 20.0, 30.0)
    assert (row["kafka_partition"], row["kafka_offset"]) == (2, 9)


def test_a_job_cancelled_or_failed_before_its_attempt_started_has_no_start() -> None:
    ctx = JobContext()
    ctx.learn(queued())
    failed = Failed(
        **COMMON, attempt=1, seq=0, ts=5, error_kind="auth", message="no", retryable=False
    )
    event = decode_lifecycle(record(failed))
    assert isinstance(event, Failed)
    row = dict(zip(JOB_COLUMNS, job_row(event, record(failed), ctx), strict=True))
    assert row["status"] == "failed" and row["error_kind"] == "auth"
    assert row["started_at"] is None and row["first_token_at"] is None
    assert row["cost_usd"] == Decimal(0) and row["prompt_tokens"] == 0


def test_the_event_row_leaves_the_output_out_of_the_payload() -> None:
    event = decode_lifecycle(record(completed("a long answer")))
    assert event is not None
    cols = Columns(EVENT_COLUMNS)
    cols.append(event_row(event, record(completed("a long answer")), None))
    row = {name: col[0] for name, col in zip(EVENT_COLUMNS, cols.data, strict=True)}
    assert row["type"] == "completed" and row["ts"] == 3_000_000
    assert "a long answer" not in row["payload"] and '"cost_usd"' in row["payload"]
    assert len(cols) == 1


def test_dollars_are_the_exact_decimal_the_float_was_written_from() -> None:
    assert usd(0.1 + 0.2) == Decimal("0.300000000")
    assert usd(0.000003105) == Decimal("0.000003105")
    assert usd(None) == Decimal(0)
