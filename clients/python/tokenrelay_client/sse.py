"""Server-sent events, parsed line by line as a browser's EventSource does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Frame:
    id: str | None
    event: str
    data: dict[str, Any]


@dataclass
class Parser:
    _id: str | None = None
    _event: str = "message"
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Frame | None:
        """The event that ``line`` completes, if it completes one (comments are skipped)."""
        if line == "":
            done = None
            if self._data:
                done = Frame(self._id, self._event, json.loads("\n".join(self._data)))
            self._event, self._data = "message", []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None
