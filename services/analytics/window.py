"""The time window of an analytics question: how it is written, and how wide it may be. Pure.

``since`` and ``until`` are ISO 8601 times (``2026-01-31``, ``2026-01-31T12:00:00Z``;
no zone means UTC) of the years 1970-2099, within the range ClickHouse's
``DateTime`` holds; a bare number is refused rather than read as a Unix time. A
time that a zone offset moves just outside that range is clamped to it. Throughput
answers one row per interval, so its window is capped per interval
(``TOKENRELAY_ANALYTICS_MAX_MINUTE_WINDOW_DAYS`` and ``…_HOUR_WINDOW_DAYS``):
the answer's size is known before the query runs.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from services.analytics.queries import utc

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 2, tzinfo=dt.UTC)
YEARS = r"^(19[7-9][0-9]|20[0-9]{2})-"
"""What a time must start with: a year from 1970 to 2099."""
_ISO = re.compile(YEARS + r"[0-9]{2}-[0-9]{2}([T ].*)?$")


def _iso_text(value: Any) -> Any:
    if isinstance(value, str) and not _ISO.match(value):
        raise ValueError(
            "an ISO 8601 time of the years 1970-2099 is expected, "
            "like 2026-01-31 or 2026-01-31T12:00:00Z"
        )
    return value


def _clamped(value: dt.datetime) -> dt.datetime:
    return min(max(utc(value), EARLIEST), LATEST)


Instant = Annotated[
    dt.datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_clamped),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": YEARS}),
]
"""A query parameter holding a time, as the analytics routes take it (always UTC-aware)."""


def too_wide(since: dt.datetime, until: dt.datetime, max_days: float, interval: str) -> str | None:
    """Why ``since``..``until`` cannot be asked per ``interval``, or None."""
    if since >= until:
        return "since must be before until"
    if until - since > dt.timedelta(days=max_days):
        return f"at most {max_days:g} days per {interval}: narrow since..until"
    return None
