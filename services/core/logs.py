"""Logging setup: one line per state change, ``job_id`` and ``topic[partition]@offset`` in it.

Kafka clients repeat themselves while a broker is down (librdkafka and aiokafka
log every failed connect, several a second per client); ``RepeatFilter`` lets
the first such line through and then one per ``window_s`` with how many it held back.
"""

from __future__ import annotations

import logging
import re
import sys
import time

CHATTY = ("librdkafka", "aiokafka", "mode", "faust")
"""Loggers of third-party clients that log per retry, not per state change."""

_VARYING = re.compile(r"\d+(\.\d+)?")


class RepeatFilter(logging.Filter):
    """Holds back a chatty logger's line seen within ``window_s`` (numbers ignored)."""

    def __init__(self, prefixes: tuple[str, ...] = CHATTY, window_s: float = 60.0) -> None:
        super().__init__()
        self.prefixes, self.window_s = prefixes, window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, _VARYING.sub("#", record.getMessage()))
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} more like this held back)"
            record.args = None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "openai", "uvicorn.access", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
