"""An analytics window: how ``since``/``until`` are written and how wide they may be."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import TypeAdapter, ValidationError

from services.analytics.window import EARLIEST, LATEST, Instant, too_wide

INSTANT: TypeAdapter[dt.datetime] = TypeAdapter(Instant)
UTC = dt.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", dt.datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:00:00Z", dt.datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00+02:00", dt.datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31 12:00", dt.datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("1970-01-01T00:00:00+05:00", EARLIEST),
        ("2099-12-31T23:00:00-05:00", dt.datetime(2100, 1, 1, 4, tzinfo=UTC)),
    ],
)
def test_iso_times_of_1970_to_2099_are_read_as_utc(text: str, expected: dt.datetime) -> None:
    assert INSTANT.validate_python(text) == expected
    assert INSTANT.validate_python(text) <= LATEST


@pytest.mark.parametrize(
    "text", ["0.5", "1700000000", "0999-01-01", "1900-01-01T00:00:00Z", "2100-01-01", "soon", ""]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        INSTANT.validate_python(text)


def test_a_window_is_capped_per_interval() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert too_wide(start, start + dt.timedelta(days=31), 31, "minute") is None
    assert too_wide(start, start + dt.timedelta(days=31, seconds=1), 31, "minute") == (
        "at most 31 days per minute: narrow since..until"
    )
    assert too_wide(start, start, 31, "minute") == "since must be before until"
