"""A process that crashes dies: fatal signals get their default action back from chDB.

chDB (ClickHouse inside this process) installs handlers for SIGABRT, SIGSEGV,
SIGBUS, SIGFPE, SIGTRAP and SIGTSTP when it is imported. Its handler takes a
crash anywhere in the process, including in librdkafka's threads, marks its own
engine dead and lets the process go on: ``os.abort()`` then never ends, and every
later query answers ``Code: 236 ... fatal error``. A process left like that is
alive to its supervisor and never serves analytics again. Seen in the public
face after a network cut: an assertion in librdkafka aborted, chDB caught it,
and ``/readyz`` stayed 503 for good.

So a process that embeds chDB loads it first, on its main thread, and then hands
those signals back to the kernel's default action (with Python's fault handler
printing every thread's stack first): the crash kills the process, and its
supervisor (``tokenrelay up``, Kubernetes) starts a whole one.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import signal

log = logging.getLogger(__name__)

CHDB_SIGNALS = (
    signal.SIGABRT,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGTRAP,
    signal.SIGTSTP,
)


def restore_fatal_signals() -> None:
    """The default action for every signal chDB takes; Python's fault handler on top.

    Must run on the main thread (Python sets signal handlers only there). The
    fault handler keeps the handler it replaces and calls it after printing: it is
    enabled last, so that what it calls is the default action, not chDB's.
    """
    for sig in CHDB_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    faulthandler.enable(all_threads=True)


def load_chdb(dsn: str) -> None:
    """For a ``chdb://`` DSN: load the engine now, then take its fatal signals back."""
    if not dsn.startswith("chdb://"):
        return
    importlib.import_module("chdb")
    restore_fatal_signals()
    log.debug("chdb loaded; fatal signals restored to their default action")
