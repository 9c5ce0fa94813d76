"""Record values are JSON (orjson) of the models in ``schemas/``, ``schema`` included."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.events import JobEvent, parse_event
from services.core.errors import DecodeError

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", by_alias=True))


def decode(model: type[M], raw: bytes | None) -> M:
    """Validate ``raw`` as ``model``; a bad record raises ``DecodeError``, never returns None."""
    if raw is None:
        raise DecodeError(f"empty record where a {model.__name__} was expected")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise DecodeError(f"not a valid {model.__name__}: {exc}") from exc


def decode_event(raw: bytes | None) -> JobEvent:
    if raw is None:
        raise DecodeError("empty record where a JobEvent was expected")
    try:
        return parse_event(raw)
    except ValidationError as exc:
        raise DecodeError(f"not a valid JobEvent: {exc}") from exc
