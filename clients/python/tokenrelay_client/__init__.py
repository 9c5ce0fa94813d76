"""A Python client of tokenrelay: ``Client`` (blocking) and ``AsyncClient``."""

from tokenrelay_client.client import AsyncClient, Client
from tokenrelay_client.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    StartedOverError,
    StreamGaveUpError,
    TokenrelayError,
    UnavailableError,
)
from tokenrelay_client.models import Batch, CompletedEvent, Event, Job, JobState, TokenEvent

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Batch",
    "Client",
    "CompletedEvent",
    "Event",
    "Job",
    "JobState",
    "NotFoundError",
    "RateLimitError",
    "StartedOverError",
    "StreamGaveUpError",
    "TokenEvent",
    "TokenrelayError",
    "UnavailableError",
]
