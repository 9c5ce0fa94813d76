"""What a JSON value on the wire may hold, so that every part can read what one part accepted.

A value that ingest accepts goes onto Kafka as orjson writes it and is read
back by pydantic (whose JSON parser refuses nesting deeper than 200), by
Faust, by ClickHouse and by subscribers in other languages. So a value must be
plain JSON that all of them read the same: numbers finite and within the
signed 64-bit range (JavaScript, Java and ClickHouse have no bigger integers,
orjson cannot write them, and a float that large is an integer to JSON
Schema), strings valid Unicode (a lone surrogate cannot be written as UTF-8),
nesting at most ``MAX_JSON_DEPTH`` deep. ``json_problem`` says where a value
breaks a rule; pure, no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_JSON_DEPTH = 32
"""Containers inside containers a request body may hold (its top object is depth 1)."""
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"
"""What is wrong with a value nested beyond ``MAX_JSON_DEPTH``."""
MAX_FREEFORM_BYTES = 64 * 1024
"""``metadata`` and ``provider_options``, each, written as JSON."""
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Every number must lie within the range of a signed 64-bit integer."""
JSON_VALUE_SCHEMA: dict[str, object] = {
    "description": "Any JSON value: numbers within ±2^63, nested at most "
    f"{MAX_JSON_DEPTH} deep, at most {MAX_FREEFORM_BYTES} bytes in all.",
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "number", "minimum": INT_MIN, "maximum": INT_MAX},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
}
"""``JsonValue`` in the OpenAPI: what a value of ``metadata`` or ``provider_options`` may be."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with any lone surrogate escaped, so that it can be written in an error message."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if bad_text(text) else text


def bad_text(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (it cannot be written as UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def json_problem(value: Any, path: str = "", depth: int = 1) -> tuple[str, str] | None:
    """``(field path, what is wrong)`` for the first part of ``value`` that breaks a rule."""
    if isinstance(value, dict | list):
        if depth > MAX_JSON_DEPTH:
            return path or "body", TOO_DEEP
        return _container_problem(value, path, depth)
    problem = _scalar_problem(value)
    return None if problem is None else (path or "body", problem)


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return "the text holds a lone surrogate (not valid Unicode)" if bad_text(value) else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and Infinity are not JSON"
    if isinstance(value, int | float):
        return None if INT_MIN <= value <= INT_MAX else "the number is beyond 64-bit range"
    return f"{type(value).__name__} is not a JSON value"


def _container_problem(
    value: dict[Any, Any] | list[Any], path: str, depth: int
) -> tuple[str, str] | None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := json_problem(item, f"{path}[{i}]", depth + 1)) is not None:
                return found
        return None
    for key, item in value.items():
        where = f"{path}.{printable(key)}" if path else printable(key)
        if bad_text(key):
            return where, "the key holds a lone surrogate (not valid Unicode)"
        if (found := json_problem(item, where, depth + 1)) is not None:
            return found
    return None
