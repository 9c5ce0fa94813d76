"""What a stream sends: nothing twice, nothing the client has, nothing after the end."""

from __future__ import annotations

import orjson
import pytest

from services.core.errors import DecodeError
from services.gateway.event_filter import EventFilter
from services.gateway.sse import ws_message
from services.gateway.stream_item import StreamItem, decode_item


def item(offset: int, type_: str, attempt: int, seq: int) -> StreamItem:
    return StreamItem(offset, type_, attempt, seq, b"{}")


def offsets(items: list[StreamItem]) -> list[int]:
    return [i.offset for i in items]


RUN = [
    item(10, "queued", 0, 0),
    item(11, "started", 1, 0),
    item(12, "token", 1, 1),
    item(13, "token", 1, 2),
    item(14, "completed", 1, 3),
]


def test_a_whole_run_passes_and_ends_with_its_terminal_event() -> None:
    flt = EventFilter()
    assert offsets(flt.admit(RUN)) == [10, 11, 12, 13, 14]
    assert flt.ended
    assert flt.admit([item(15, "token", 1, 4)]) == []


def test_duplicates_at_later_offsets_are_dropped() -> None:
    flt = EventFilter()
    dup = [item(20, "queued", 0, 0), item(21, "started", 1, 0), item(22, "token", 1, 1)]
    got = flt.admit(RUN[:3] + dup + RUN[3:])
    assert offsets(got) == [10, 11, 12, 13, 14]


def test_a_crashed_attempt_then_the_next_one() -> None:
    events = [*RUN[:3], item(13, "started", 2, 0), item(14, "token", 2, 1)]
    events += [item(15, "token", 1, 2), item(16, "completed", 2, 2)]
    assert offsets(EventFilter().admit(events)) == [10, 11, 12, 13, 14, 16]


def test_a_cursor_skips_what_the_client_has_and_its_event_seeds_the_duplicates() -> None:
    flt = EventFilter(after=12)
    flt.seed(RUN[2])
    replayed_twice = [item(13, "token", 1, 1), *RUN[3:]]
    assert offsets(flt.admit(RUN + replayed_twice)) == [13, 14]


def test_a_cursor_at_the_terminal_event_ends_the_stream_at_once() -> None:
    flt = EventFilter(after=14)
    flt.seed(RUN[4])
    assert flt.ended
    assert flt.admit(RUN) == []


def test_an_admin_retry_is_a_newer_queued_event() -> None:
    flt = EventFilter()
    events = [item(30, "queued", 0, 1), item(31, "started", 2, 0), item(32, "queued", 0, 1)]
    assert offsets(flt.admit(events)) == [30, 31]


def test_items_decode_once_and_frame_for_both_wires() -> None:
    raw = orjson.dumps({"type": "token", "attempt": 1, "seq": 3, "tenant": "alice", "text": "hi"})
    it = decode_item(7, raw)
    assert (it.type, it.attempt, it.seq, it.tenant, it.terminal) == ("token", 1, 3, "alice", False)
    assert it.sse == b"id: 7\nevent: token\ndata: " + raw + b"\n\n"
    assert it.sse is it.sse, "framed once, shared by every stream"
    assert orjson.loads(it.ws) == {"id": "7", "event": "token", "data": orjson.loads(raw)}
    assert ws_message(7, "token", raw).decode() == it.ws


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"type": "token"}', b'{"type": 1, "attempt": 1, "seq": 1}']
)
def test_a_record_that_is_not_an_event_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_item(1, raw)
