"""The wire contract of tokenrelay: every record value on every topic.

Each model carries a ``schema`` field (``"tokenrelay.<Name>/<version>"``) so a
consumer can tell what it reads before it trusts it. ``python -m schemas.export``
writes one JSON Schema file per value type into ``schemas/json``; a unit test
keeps those files in step with the models.
"""

from schemas.commands import JobCommand
from schemas.control import Cancel, CancelBatch, Control, PauseBatch, ResumeBatch
from schemas.dead_letter import DeadLetter
from schemas.events import (
    Cancelled,
    Completed,
    ErrorKind,
    Failed,
    JobEvent,
    Queued,
    Retrying,
    Started,
    Token,
    Usage,
    parse_event,
)
from schemas.jobs import FakeProviderOptions, JobRequest, Message, Priority, ResponseFormat
from schemas.rules import TERMINAL_EVENT_TYPES, TERMINAL_STATUS, already_seen
from schemas.state import BatchSummary, JobState, JobStatus, PriorityQueue, StatusCounts

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "TERMINAL_STATUS",
    "BatchSummary",
    "Cancel",
    "CancelBatch",
    "Cancelled",
    "Completed",
    "Control",
    "DeadLetter",
    "ErrorKind",
    "Failed",
    "FakeProviderOptions",
    "JobCommand",
    "JobEvent",
    "JobRequest",
    "JobState",
    "JobStatus",
    "Message",
    "PauseBatch",
    "Priority",
    "PriorityQueue",
    "Queued",
    "ResponseFormat",
    "ResumeBatch",
    "Retrying",
    "Started",
    "StatusCounts",
    "Token",
    "Usage",
    "already_seen",
    "parse_event",
]
