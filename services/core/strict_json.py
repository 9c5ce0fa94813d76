"""Request bodies read as strict JSON: UTF-8, and only values every part can pass on.

Python's ``json`` reads what RFC 8259 leaves open (NaN, Infinity, integers of
any size, lone surrogates in escapes, UTF-16 input); orjson would turn an
integer beyond 64 bits into a float without a word. Here the body must be
UTF-8 and every value must keep the rules of ``schemas.limits``; a body that
does not is refused before any handler sees it: 400 ``invalid_json`` when it
is not JSON, 422 naming the field when a value is out of bounds. Pure.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from schemas.limits import TOO_DEEP, json_problem
from services.core.errors import ApiError


def loads(body: bytes) -> Any:
    """The body's value, or an ``ApiError`` that says what to fix and where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"not UTF-8 (byte {exc.start})", "body") from exc
    if _nesting(text) > PARSED_DEPTH:
        raise ApiError(422, "invalid_request", TOO_DEEP, "body")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
            "body",
        ) from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ApiError(422, "invalid_request", "a number does not fit in 64 bits", "body") from exc
    if (found := json_problem(value)) is not None:
        field, problem = found
        raise ApiError(422, "invalid_request", problem, field)
    return value


PARSED_DEPTH = 256
"""Bodies up to this deep are parsed, and ``json_problem`` names the field nested beyond
``MAX_JSON_DEPTH``; deeper ones are refused whole (field ``body``) before the parser
recurses: far below the interpreter's limit either way."""
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting(text: str) -> int:
    """How deep the text's brackets go outside its strings, counted without parsing.

    The parser recurses once per level; a body thousands deep would take it to
    the interpreter's recursion limit, where a garbage collection that runs a
    failing finaliser cannot even report it. So depth is measured first, flat.
    """
    if text.count("[") + text.count("{") <= PARSED_DEPTH:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
