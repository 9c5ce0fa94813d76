"""``tokenrelay`` whose worker loop raises once a file exists: a bug, put in from outside.

``python -m tests.support.broken_loop serve worker …`` with ``BREAK_WORKER_LOOP_WHEN`` naming
the file. For tests of what a process does when one of its parts stops for good
(``services.core.breakdown``); nothing in the services knows of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from services import cli
from services.worker.runner import WorkerRunner

MARKER = Path(os.environ["BREAK_WORKER_LOOP_WHEN"])
_apply_pauses = WorkerRunner._apply_pauses


async def _breaking(self: WorkerRunner) -> None:
    if MARKER.exists() and not self._stopping:
        raise RuntimeError("a bug in the loop, put there by the test")
    await _apply_pauses(self)


WorkerRunner._apply_pauses = _breaking  # type: ignore[method-assign]

if __name__ == "__main__":
    cli.main()
