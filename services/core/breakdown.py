"""A part that stopped for good ends its process, so that a supervisor starts a fresh one.

Most failures heal in place: a lost broker, a failed insert, a rebalance. A
background task that ended with an unexpected exception does not (the worker's
loop, the gateway's fan-out): the process would go on answering ``/healthz``
while doing nothing. Such a part reports here; the server then shuts down as on
SIGTERM (running jobs get their grace period, streams end so clients resume
elsewhere) and the process exits with ``EXIT_BROKEN``. ``tokenrelay up``,
Kubernetes and Compose's restart policy start it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

EXIT_BROKEN = os.EX_SOFTWARE
"""The exit code of a process one of whose parts stopped for good (70)."""


@dataclass
class Breakdown:
    """Why a part of this process stopped for good; None while every part runs."""

    reason: str | None = None

    def report(self, reason: str) -> None:
        """Say that the process must be replaced; the first reason is the one kept."""
        if self.reason is None:
            self.reason = reason
            log.critical("%s: the process shuts down to be started again", reason)

    def watch(self, task: asyncio.Task[None], what: str) -> None:
        """Report ``task`` ending with an exception (``what`` names it in the reason)."""

        def ended(done: asyncio.Task[None]) -> None:
            if done.cancelled() or (exc := done.exception()) is None:
                return
            log.error("%s stopped", what, exc_info=exc)
            self.report(f"{what} stopped: {exc!r}")

        task.add_done_callback(ended)
