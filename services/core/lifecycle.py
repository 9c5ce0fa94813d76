"""``tokenrelay.lifecycle``: what a reader of what happens to jobs (the analytics sink,
cancel's lookup) consumes instead of every token.

Beside each event a job puts on ``tokenrelay.tokens``, its writer puts a copy on
``tokenrelay.lifecycle`` (same key, so the same partition number) when the event
changes what a reader of the job's state must know: every event but ``token``,
and of the tokens only the first and then one per ``progress_tick_s`` (the
worker's ``ProgressTicks``). Readers of the lifecycle do work per job that does
not grow with its token count; the tokens topic stays the stream, its offsets the
SSE ids.

A copy whose event's offset on the tokens topic is known carries it in the
``tokens-offset`` header (ASCII digits): ``queued`` (ingest confirms it before
the copy) and ``started`` (the worker too). That offset is where a watcher
without a cursor starts reading the job's stream (``JobState.attempt_start_offset``).

Copies are written with their events: the worker's terminal events and their
copies in one transaction; ``queued``'s copy with the job's command, once
``queued`` itself is confirmed; ``started``'s once ``started`` is; a tick right
after its token. The worker's copies of one attempt keep their order (one
producer, one partition); ``queued``'s may land after them, which the reducer
treats as filling in, never as a new submission.
"""

from __future__ import annotations

from services.core.kafka import OutRecord
from services.core.settings import Topics

TOKENS_OFFSET_HEADER = "tokens-offset"

Headers = list[tuple[str, bytes]]


def copy_headers(headers: Headers | None, tokens_offset: int | None) -> Headers | None:
    """The headers of a lifecycle copy: its event's headers (the trace), plus its offset
    on the tokens topic when known."""
    if tokens_offset is None:
        return headers
    return [*(headers or ()), (TOKENS_OFFSET_HEADER, str(tokens_offset).encode())]


def tokens_offset(headers: Headers | None) -> int | None:
    """The ``tokens-offset`` header of a lifecycle record, or None (absent or not a number)."""
    for name, value in headers or ():
        if name == TOKENS_OFFSET_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def event_records(topics: Topics, key: str, value: bytes) -> list[OutRecord]:
    """A lifecycle event (encoded) for one transaction: on the tokens topic and its copy."""
    return [OutRecord(topics.tokens, key, value), OutRecord(topics.lifecycle, key, value)]
