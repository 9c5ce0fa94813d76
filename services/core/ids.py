"""Job ids are UUIDv7: sortable, and they tell when the job was submitted.

The gateway uses that time to seek a job's first event with
``offsets_for_times`` instead of scanning a partition from its start.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""Job and batch ids as we issue them: a UUIDv7 in lower-case canonical form."""
_ID = re.compile(ID_PATTERN)


def is_issued_id(text: str) -> bool:
    """Whether ``text`` has the shape of an id we issue (anything else names nothing)."""
    return len(text) == 36 and _ID.match(text) is not None


class _RandomBits(threading.local):
    """80 random bits at a time from the OS's generator, fetched 8 KiB at once per thread.

    ``os.urandom`` per id was the most of a batch's time in ``POST /v1/batches``:
    not the call (0.3 µs) but the GIL it gives up for the syscall. The thread
    validating a batch then waited for the event loop's thread to hand the GIL back,
    up to the 5 ms switch interval, for every job (py-spy: 40 % of the public face's
    samples under ``bench batch``). Each thread draws from bytes of its own, so no
    two draws share any, without a lock.
    """

    CHUNK = 8192

    def __init__(self) -> None:
        self.buf = b""
        self.at = 0

    def draw80(self) -> int:
        at = self.at
        if at + 10 > len(self.buf):
            self.buf, at = os.urandom(self.CHUNK), 0
        self.at = at + 10
        return int.from_bytes(self.buf[at : at + 10], "big")


_random = _RandomBits()


def new_job_id(now_ms: int | None = None) -> str:
    """A fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then randomness."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = _random.draw80()
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def job_id_ms(job_id: str) -> int | None:
    """Submission time (Unix ms) of a UUIDv7 job id; None for anything else."""
    try:
        u = uuid.UUID(job_id)
    except ValueError:
        return None
    if u.version != 7:
        return None
    return u.int >> 80


def now_us() -> int:
    """Wall-clock time in integer microseconds since the Unix epoch (event ``ts``)."""
    return time.time_ns() // 1000
