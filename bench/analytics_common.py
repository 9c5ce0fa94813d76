"""What the analytics benchmarks share: the machine line, a fresh chDB directory, timing spreads,
CPU by thread of this process, and the figures table.

chDB runs ClickHouse inside the process and allows one data directory per process, so each
analytics benchmark opens exactly one (``fresh_chdb_dir``) and ``make bench`` runs each of
them in a process of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import statistics
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.gateway_fanout import machine
from bench.processes import TICKS_PER_S

console = Console(width=170)  # progress lines and the table stay one line each in a log
_DIGITS = re.compile(r"[\d_\-:.]+$")


def host_line() -> dict[str, Any]:
    """Print the machine, its load and the date; return them for the JSON line."""
    host = machine()
    host["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load = host["loadavg_before"]
    console.print(
        f"machine: {host['cpus']} x {host['cpu']}, {host['mem_gb']} GB, Linux {host['kernel']},"
        f" Python {host['python']}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" {host['date']}; code {host['code']}"
    )
    return host


@contextmanager
def fresh_chdb_dir(root: Path | None, keep: bool) -> Iterator[Path]:
    """A new, empty directory for this process's one chDB engine; removed after unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="tokenrelay-bench-chdb-", dir=root))
    try:
        yield path
    finally:
        if keep:
            console.print(f"chDB data kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def spread(ms: list[float]) -> dict[str, float]:
    """First (cold), min, median and max of timings in milliseconds."""
    return {
        "first": round(ms[0], 2),
        "min": round(min(ms), 2),
        "median": round(statistics.median(ms), 2),
        "max": round(max(ms), 2),
    }


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, by thread name less its number.

    Shows where the time goes: the event loop's thread (``MainThread``), the ClickHouse
    client's thread (``clickhouse``), the consumer's (``consumer``), librdkafka's threads
    (``rdk:…``) and chDB's own pools (``ThreadPool``, ``QueryPipelineEx``, …). Python threads
    are named as ``threading`` names them, the others as the kernel does.
    """
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: defaultdict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended while we looked
            continue
        name = python.get(int(task.name), comm)
        fields = stat[stat.rindex(")") + 2 :].split()
        out[_DIGITS.sub("", name) or name] += (int(fields[11]) + int(fields[12])) / TICKS_PER_S
    return dict(out)


def cpu_by_thread(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU % (100 % = one core) of each thread group between two ``thread_cpu_s``, largest first.

    Threads that ended between the two samples are not counted.
    """
    pct = {k: 100 * (v - before.get(k, 0.0)) / seconds for k, v in after.items()}
    return {k: round(v, 1) for k, v in sorted(pct.items(), key=lambda kv: -kv[1]) if v >= 0.5}


def figures_table(title: str, rows: Iterable[tuple[str, str, str]]) -> Table:
    t = Table(title=title)
    t.add_column("figure", justify="left")
    t.add_column("value", justify="right")
    t.add_column("note", justify="left")
    for row in rows:
        t.add_row(*row)
    return t
