"""The protocol's rules, written once: every part that must agree on them imports them here.

* **Attempt numbering.** A job's ``queued`` events belong to its submissions,
  not to a run: they carry ``attempt`` 0 (``SUBMISSION_ATTEMPT``) and ``seq`` =
  the submission's number (0, then one more per admin retry). Runs count from
  ``FIRST_ATTEMPT`` (1); within a run ``seq`` counts from 0, ``started`` first.
* **Duplicates.** Events reach every reader at least once, in order per job. So
  the highest event a reader has applied is all it needs to remember, and an
  event at or below it is a duplicate (``already_seen``): ``queued`` events are
  ordered by ``seq``, run events by ``(attempt, seq)``. The aggregator's reducer
  and the gateway's stream filter both decide with it.
* **Endings.** A run ends with exactly one terminal event; its type decides the
  job's status (``TERMINAL_STATUS``).

Pure; no imports from the rest of ``schemas`` so that every model can use it.
"""

from __future__ import annotations

SUBMISSION_ATTEMPT = 0
"""The ``attempt`` of ``queued`` events (ingest's, and an admin retry's)."""
FIRST_ATTEMPT = 1
"""The first run of a job; each retry runs as the next number."""

TERMINAL_STATUS = {"completed": "succeeded", "failed": "failed", "cancelled": "cancelled"}
"""The status a job ends in, by the type of the event that ended it."""
TERMINAL_EVENT_TYPES = frozenset(TERMINAL_STATUS)

NONE_SEEN = -1
"""The submission number a reader has seen before any ``queued`` event."""
NO_RUN_SEEN = (0, -1)
"""The ``(attempt, seq)`` a reader has seen before any run event."""


def already_seen(attempt: int, seq: int, *, submission: int, run: tuple[int, int]) -> bool:
    """Whether the event ``(attempt, seq)`` is at or below what a reader has applied.

    ``submission`` is the highest ``seq`` of a ``queued`` event applied
    (``NONE_SEEN`` if none), ``run`` the highest ``(attempt, seq)`` of a run event
    (``NO_RUN_SEEN`` if none).
    """
    if attempt == SUBMISSION_ATTEMPT:
        return seq <= submission
    return (attempt, seq) <= run
