"""The strict reading of request bodies: UTF-8 JSON whose every value all readers share."""

from __future__ import annotations

import gc
import sys
import traceback
from collections.abc import Iterator

import pytest

from schemas.limits import MAX_JSON_DEPTH, json_problem
from services.core.errors import ApiError
from services.core.strict_json import loads


def refused(body: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        loads(body)
    return caught.value


def test_plain_json_reads_as_json() -> None:
    assert loads(b'{"a": [1, 2.5, "\\u00e9", null, true], "b": {"c": -9223372036854775808}}') == {
        "a": [1, 2.5, "é", None, True],
        "b": {"c": -(2**63)},
    }


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"a": 1,', 400, "body"),
        ('{"a": 1}'.encode("utf-16"), 400, "body"),
        (b'{"a": "\xff"}', 400, "body"),
        (b'{"n": 9223372036854775808}', 422, "n"),
        (b'{"n": [0, 1e19]}', 422, "n[1]"),
        (b'{"x": NaN}', 422, "x"),
        (b'{"x": {"y": Infinity}}', 422, "x.y"),
        (b'{"x": 1e999}', 422, "x"),
        (b'{"s": "\\ud800"}', 422, "s"),
        (b'{"k": {"\\udfff": 1}}', 422, "k.\\udfff"),
        (b'{"n": ' + b"9" * 5000 + b"}", 422, "body"),
        (b"[" * 5000 + b"]" * 5000, 422, "body"),
    ],
)
def test_what_not_every_reader_can_read_is_refused_at_its_place(
    body: bytes, status: int, field: str
) -> None:
    err = refused(body)
    assert (err.status, err.field) == (status, field), err.message
    assert err.message


def test_brackets_inside_strings_are_text_not_nesting() -> None:
    body = b'{"s": "' + b"[" * 300 + b'\\" {{{", "t": ["]]]", [[1]]]}'
    assert loads(body) == {"s": "[" * 300 + '" {{{', "t": ["]]]", [[1]]]}
    deep = b'{"s": "' + b"]" * 100 + b'", "t": ' + b"[" * 300 + b"]" * 300 + b"}"
    err = refused(deep)
    assert (err.status, err.field) == (422, "body")


def test_a_field_nested_too_deep_is_named() -> None:
    err = refused(b'{"m": ' + b"[" * 200 + b"]" * 200 + b"}")
    assert (err.status, err.field) == (422, "m" + "[0]" * 31)


class _FailingFinaliser:
    def __del__(self) -> None:
        raise ValueError("a finaliser failed")


@pytest.fixture()
def reported(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | BaseException]]:
    """What Python's hook for failed finalisers could write, as pytest's own hook does."""
    seen: list[str | BaseException] = []

    def hook(failure: sys.UnraisableHookArgs) -> None:
        try:
            seen.append("".join(traceback.format_exception(failure.exc_value)))
        except RecursionError as exc:
            seen.append(exc)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    threshold = gc.get_threshold()
    yield seen
    gc.set_threshold(*threshold)


def test_a_deep_body_is_refused_without_taking_the_stack_to_its_limit(
    reported: list[str | BaseException],
) -> None:
    # A collection that runs while the parser is thousands of levels down
    # finds no stack left to report a failing finaliser: pytest's own hook then
    # failed a test that had nothing to do with it. The collection is timed to
    # land at each depth near the interpreter's limit in turn.
    for allocations in range(800, 1000, 5):
        gc.collect()
        gc.set_threshold(allocations)
        garbage = _FailingFinaliser()
        garbage.cycle = garbage  # type: ignore[attr-defined]
        del garbage
        assert refused(b"[" * 5000 + b"]" * 5000).status == 422
    gc.collect()
    assert reported, "no finaliser ran"
    assert all(isinstance(text, str) and "a finaliser failed" in text for text in reported)


def test_nesting_is_counted_from_the_body() -> None:
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    assert json_problem({"a": deep}) is None
    assert json_problem({"a": [deep]}) == (
        "a" + "[0]" * (MAX_JSON_DEPTH - 1),
        f"nested deeper than {MAX_JSON_DEPTH} levels",
    )


def test_python_values_that_are_not_json_are_named() -> None:
    assert json_problem({"when": {1, 2}}) == ("when", "set is not a JSON value")
    assert json_problem(2**63 - 1) is None
    assert json_problem(-(2**63) - 1) == ("body", "the number is beyond 64-bit range")
