from __future__ import annotations

import pytest

from services.core.http import accepts_event_stream, field_path
from services.gateway.sse import frame, parse_last_event_id, retry_hint
from tests.support.sse import parse_sse_lines


def test_frame_round_trips_through_an_sse_parser() -> None:
    raw = frame(42, "token", b'{"text":"hi"}') + frame(43, "completed", b'{"content":"hi"}')
    events = list(parse_sse_lines(iter((retry_hint() + raw).decode().split("\n"))))
    assert [(e.id, e.event, e.data) for e in events] == [
        ("42", "token", {"text": "hi"}),
        ("43", "completed", {"content": "hi"}),
    ]


def test_last_event_id() -> None:
    assert parse_last_event_id(None) is None
    assert parse_last_event_id("") is None
    assert parse_last_event_id("17") == 17
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(ValueError, match="Last-Event-ID"):
            parse_last_event_id(bad)


def test_field_path() -> None:
    assert field_path(("body", "messages", 0, "role")) == "messages[0].role"
    assert field_path(("body",)) is None
    assert field_path(("query", "limit")) == "limit"


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("text/event-stream", True),
        ("application/json, Text/Event-Stream; q=0.5", True),
        ("text/event-stream;q=0", False),
        ("text/event-stream; q=0.0, application/json", False),
        ("text/event-stream; q=x", True),
        ("application/json", False),
        ("*/*", False),
        ("text/event-streams", False),
        (None, False),
    ],
)
def test_an_event_stream_is_sent_only_to_who_lists_it(accept: str | None, wanted: bool) -> None:
    assert accepts_event_stream(accept) is wanted
