"""py-spy on this very process, for a benchmark run: start, stop, and a summary of where time went.

py-spy (``pip install py-spy``) samples every thread's Python stack from outside, without
slowing the process much (``--nonblocking``), so it sees the event loop's thread and the
threads that run blocking calls (the ClickHouse client, the Kafka consumer) alike. Time spent
in C code (orjson, librdkafka, chDB) is charged to the Python line that called it. The raw
samples go to a file (one ``thread (tid): name;frame;…;frame count`` line per stack, which
flamegraph tools read); ``summary`` prints the threads' shares, the lines where the samples
ended (self time), and the functions of ours and the ClickHouse driver that held most samples
(inclusive time).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 200
TOP = 25
OURS = ("services/", "clickhouse_connect/", "bench/")
_NUMBERED = re.compile(r"[\d_]+$")  # clickhouse_0 → clickhouse
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    return found


def _short(frame: str) -> str:
    """``func (…/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py:12)``."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['func']} ({path}{':' + m['line'] if m['line'] else ''})"


def _function(frame: str) -> str:
    """The frame without its line number: a function's inclusive time adds up over its lines."""
    return re.sub(r":\d+\)$", ")", frame)


class PySpy:
    """``py-spy record`` of this process between ``enable`` and ``disable``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._proc: subprocess.Popen[bytes] | None = None

    def enable(self) -> None:
        cmd = [py_spy_binary(), "record", "--pid", str(os.getpid()), "--rate", str(RATE_HZ)]
        cmd += ["--format", "raw", "--threads", "--nonblocking", "--output", str(self.out)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def disable(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        _, err = self._proc.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")

    def samples(self) -> list[tuple[str, list[str], int]]:
        """(thread name, frames outermost first, count) of each distinct stack."""
        out = []
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            head, _, frames = stack.partition(";")
            thread = head.split(": ", 1)[1] if ": " in head else head
            out.append((thread, [_short(f) for f in frames.split(";") if f], int(count)))
        return out

    def summary(self) -> str:
        stacks = self.samples()
        total = sum(n for _, _, n in stacks) or 1
        threads: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        for thread, frames, n in stacks:
            group = _NUMBERED.sub("", thread)
            threads[group] += n
            if frames:
                leaves[f"[{group}] {frames[-1]}"] += n
            for func in {_function(f) for f in frames if any(o in f for o in OURS)}:
                inclusive[func] += n
        lines = [f"py-spy: {total:,} samples at {RATE_HZ} Hz of non-idle threads ({self.out})"]
        lines += ["threads (share of samples):"]
        lines += [f"  {100 * n / total:5.1f} %  {t}" for t, n in threads.most_common()]
        lines += ["self time (the line a sample ended in):"]
        lines += [f"  {100 * n / total:5.1f} %  {f}" for f, n in leaves.most_common(TOP)]
        lines += ["inclusive time (functions of services/, clickhouse_connect/, bench/):"]
        lines += [f"  {100 * n / total:5.1f} %  {f}" for f, n in inclusive.most_common(TOP)]
        return "\n".join(lines)
