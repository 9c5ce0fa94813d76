"""The provider interface: a job in, an async stream of chunks out, typed errors.

A provider yields ``Chunk``s: text deltas as the model sent them, and at the
end the finish reason and usage. It raises ``ProviderError`` with an
``ErrorKind`` whose retryability is a fixed rule (``RETRYABLE``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from schemas.commands import JobCommand
from schemas.events import ErrorKind, Usage
from services.core.errors import TokenrelayError

RETRYABLE = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT, ErrorKind.PROVIDER})


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


class ProviderError(TokenrelayError):
    def __init__(self, kind: ErrorKind, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Provider(Protocol):
    name: str

    def stream(self, command: JobCommand) -> AsyncIterator[Chunk]:
        """Stream the job's completion; closing the iterator closes the upstream request."""
        ...

    async def close(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
