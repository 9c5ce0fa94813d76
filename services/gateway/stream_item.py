"""One record of ``tokenrelay.tokens`` as the gateway handles it: decoded once, framed once.

A record watched by many streams is decoded once (only the few fields the
gateway decides on) and framed once per wire format; every stream shares the
same bytes.
"""

from __future__ import annotations

import logging

import orjson

from schemas.rules import TERMINAL_EVENT_TYPES
from services.core.errors import DecodeError
from services.core.kafka import Record
from services.core.metrics import POISON_RECORDS
from services.gateway.sse import frame, ws_message

log = logging.getLogger(__name__)


class StreamItem:
    """An event of a job at a Kafka offset, with its SSE and websocket frames built on demand."""

    __slots__ = ("_sse", "_ws", "attempt", "headers", "offset", "raw", "seq", "tenant", "type")

    def __init__(
        self, offset: int, type_: str, attempt: int, seq: int, raw: bytes, tenant: str | None = None
    ) -> None:
        self.offset = offset
        self.type = type_
        self.attempt = attempt
        self.seq = seq
        self.raw = raw
        self.tenant = tenant
        self.headers: list[tuple[str, bytes]] | None = None
        """The record's headers: the trace context of a traced job's attempt."""
        self._sse: bytes | None = None
        self._ws: str | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = frame(self.offset, self.type, self.raw)
        return self._sse

    @property
    def ws(self) -> str:
        if self._ws is None:
            self._ws = ws_message(self.offset, self.type, self.raw).decode()
        return self._ws

    def __repr__(self) -> str:
        return f"StreamItem({self.offset}, {self.type}, {self.attempt}.{self.seq})"


def decode_item(offset: int, raw: bytes) -> StreamItem:
    """The item of a record's value; ``DecodeError`` if it is not a job event."""
    try:
        data = orjson.loads(raw)
        type_, attempt, seq = data["type"], data["attempt"], data["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise DecodeError(f"not a job event: {exc}") from exc
    if not (isinstance(type_, str) and isinstance(attempt, int) and isinstance(seq, int)):
        raise DecodeError("type, attempt and seq must be a string and two integers")
    if b"\n" in raw:
        raw = orjson.dumps(data)  # SSE data must be one line
    tenant = data.get("tenant")
    return StreamItem(offset, type_, attempt, seq, raw, tenant if isinstance(tenant, str) else None)


def item_of(rec: Record) -> StreamItem | None:
    """The item of a record; None (logged and counted) if it is not a job event.

    The gateway only reads the topic: a poison record is the dead-letter concern of
    its consumers with a group (the aggregator, the sink); a stream skips it.
    """
    try:
        item = decode_item(rec.offset, rec.value or b"")
    except DecodeError as exc:
        POISON_RECORDS.labels(rec.topic).inc()
        log.error("skipping undecodable record at %s: %s", rec.where(), exc)
        return None
    item.headers = rec.headers
    return item
