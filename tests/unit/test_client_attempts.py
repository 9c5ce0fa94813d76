"""The Python client's ``tokens()`` gives one attempt's text (``_OneAttempt``)."""

from __future__ import annotations

from typing import Any

import pytest
from tokenrelay_client import StartedOverError
from tokenrelay_client.client import _OneAttempt
from tokenrelay_client.models import event_of


def ev(offset: int, kind: str, attempt: int, **fields: Any) -> Any:
    data = {"job_id": "j", "attempt": attempt, "seq": offset, "ts": 1, "type": kind, **fields}
    if kind == "token":
        data.setdefault("index", offset)
    return event_of(kind, data, str(offset))


def texts(one: _OneAttempt, events: list[Any]) -> str:
    return "".join(t for e in events if (t := one.text(e)) is not None)


def test_a_later_attempt_after_text_raises_with_the_cursor_that_goes_on_from_it() -> None:
    one = _OneAttempt("j")
    first = [ev(0, "started", 1), ev(1, "token", 1, text="He"), ev(2, "started", 2)]
    assert texts(one, first) == "He"
    with pytest.raises(StartedOverError) as raised:
        one.text(ev(3, "token", 2, text="Hi"))
    assert (raised.value.attempt, raised.value.last_event_id) == (2, "2")
    again = _OneAttempt("j")  # tokens(job_id, last_event_id="2") reads from offset 3 on
    assert texts(again, [ev(3, "token", 2, text="Hi"), ev(4, "token", 1, text="x")]) == "Hi"


def test_a_retry_before_any_text_is_the_answer() -> None:
    one = _OneAttempt("j")
    events = [ev(0, "started", 1), ev(1, "started", 2), ev(2, "token", 2, text="Hi")]
    assert texts(one, events) == "Hi"
