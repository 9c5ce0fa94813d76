"""Events → ``job_events`` and ``jobs`` rows, as the sink writes them."""

from __future__ import annotations

from decimal import Decimal

import orjson
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
        **COMMON,
        attempt=0,
        seq=0,
        ts=1_000_000,
        priority=Priority.HIGH,
        model="gpt-4o-mini",
        provider="openai",
        batch_id="b1",
        estimated_cost_usd=0.000123,
    )


def started(attempt: int = 1) -> Started:
    return Started(
        **COMMON,
        attempt=attempt,
        seq=0,
        ts=2_000_000,
        model="gpt-4o-mini",
        provider="openai",
        queue_wait_ms=1000.0,
    )


def completed(text: str = "hello") -> Completed:
    return Completed(
        **COMMON,
        attempt=1,
        seq=3,
        ts=3_000_000,
        content=text,
        parsed=None,
        finish_reason="stop",
        usage=Usage(prompt_tokens=7, completion_tokens=2),
        cost_usd=0.000003105,
        ttft_ms=250.0,
        itl_ms=Percentiles(p50=10.0, p90=20.0, p99=30.0),
        duration_ms=900.0,
        tokens_per_s=3.0,
        tokens=2,
    )


def decoded(event: object) -> dict[str, object]:
    out = decode_lifecycle(record(event))
    assert out is not None
    return out


def test_every_event_the_schema_allows_decodes() -> None:
    failed = Failed(
        **COMMON, attempt=1, seq=0, ts=5, error_kind="auth", message="no", retryable=False
    )
    for event in (queued(), started(), completed(), failed):
        assert decoded(event)["type"] == event.type


def test_token_events_are_skipped_and_lifecycle_events_read() -> None:
    tok = Token(**COMMON, attempt=1, seq=1, ts=1, text='"type":"token"', index=1)
    assert decode_lifecycle(record(tok)) is None
    # completed output that contains the text of a token's type is still a completed event
    done = decoded(completed('{"type":"token"}'))
    assert done["type"] == "completed" and done["content"] == '{"type":"token"}'


def _with(event: object, **change: object) -> bytes:
    data = orjson.loads(encode(event))  # type: ignore[arg-type]
    data.update(change)
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"not json", "JSON"),
        (b"[]", "object"),
        (b'{"type": "queued"}', "job_id"),
        (None, "empty"),
        (_with(queued(), ts="yesterday"), "ts"),
        (_with(queued(), ts=2**63), "ts"),
        (_with(queued(), priority="whenever"), "priority"),
        (_with(started(), attempt=70_000), "attempt"),
        (_with(started(), seq=-1), "seq"),
        (_with(completed(), cost_usd=-1), "cost_usd"),
        (_with(completed(), usage={"prompt_tokens": 1}), "completion_tokens"),
        (_with(completed(), itl_ms={"p50": "fast"}), "p50"),
        (_with(completed(), type="finished"), "type"),
    ],
)
def test_a_record_clickhouse_would_refuse_is_a_decode_error_naming_the_field(
    value: bytes | None, field: str
) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_lifecycle(Record("tokens", 0, 1, None, value, 0))


def test_a_finished_job_row_carries_what_its_queued_and_started_events_said() -> None:
    ctx = JobContext()
    for ev in (queued(), started()):
        ctx.learn(decoded(ev))
    event = decoded(completed())
    row = dict(zip(JOB_COLUMNS, job_row(event, record(completed(), offset=9), ctx), strict=True))
    assert row["status"] == "succeeded"
    assert (row["priority"], row["model"], row["provider"], row["batch_id"]) == (
        "high",
        "gpt-4o-mini",
        "openai",
        "b1",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["tokens"]) == (7, 2, 2)
    assert Decimal(str(row["cost_usd"])) == Decimal("0.000003105")
    assert Decimal(str(row["estimated_cost_usd"])) == Decimal("0.000123")
    assert (row["queued_at"], row["started_at"], row["finished_at"]) == (
        1_000_000,
        2_000_000,
        3_000_000,
    )
    assert row["first_token_at"] == 2_250_000
    assert (row["itl_p50_ms"], row["itl_p90_ms"], row["itl_p99_ms"]) == (10.0, 20.0, 30.0)
    assert (row["kafka_partition"], row["kafka_offset"]) == (2, 9)


def test_a_job_that_failed_before_its_attempt_started_has_no_start() -> None:
    ctx = JobContext()
    ctx.learn(decoded(queued()))
    failed = Failed(
        **COMMON, attempt=1, seq=0, ts=5, error_kind="auth", message="no", retryable=False
    )
    row = dict(zip(JOB_COLUMNS, job_row(decoded(failed), record(failed), ctx), strict=True))
    assert row["status"] == "failed" and row["error_kind"] == "auth"
    assert row["started_at"] is None and row["first_token_at"] is None
    assert row["cost_usd"] == 0 and row["prompt_tokens"] == 0


def test_the_event_row_leaves_the_output_out_of_the_payload() -> None:
    cols = Columns(EVENT_COLUMNS)
    cols.append(event_row(decoded(completed("a long answer")), record(completed()), None))
    row = {name: col[0] for name, col in zip(EVENT_COLUMNS, cols.data, strict=True)}
    assert row["type"] == "completed" and row["ts"] == 3_000_000
    payload = orjson.loads(row["payload"])
    assert "content" not in payload and payload["cost_usd"] == 0.000003105
    assert len(cols) == 1


def test_dollars_reach_clickhouse_as_the_decimal_they_were_written_as() -> None:
    # clickhouse-connect writes Decimal(str(x)) scaled to 9 places, truncating
    ctx = JobContext(estimated_cost_usd=0.1 + 0.2)
    event = decoded(completed())
    event["cost_usd"] = 2.9999999999999996e-07  # 3e-7 after float arithmetic
    row = dict(zip(JOB_COLUMNS, job_row(event, record(completed()), ctx), strict=True))
    assert int(Decimal(str(row["cost_usd"])) * 10**9) == 300
    assert int(Decimal(str(row["estimated_cost_usd"])) * 10**9) == 300_000_000
