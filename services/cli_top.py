"""``tokenrelay top``: a live terminal view of the stack, redrawn every second.

Queues per priority, the running jobs with a progress bar each (tokens so far
of ``max_tokens``), tokens/s and jobs/min of the last full minute, and the
newest failures. ``q`` (or Ctrl-C) quits; ``--once`` prints one frame and
exits, for a script or a terminal without a keyboard; ``--json`` prints what
one frame is drawn from.

What is shown is built by ``read_snapshot`` (the API calls) and ``render`` (a
pure function of the snapshot), which the tests call with a recording console.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from services.cli_client import JsonOption, KeyOption, UrlOption, api_client, err, print_json

REFRESH_S = 1.0
ANALYTICS_EVERY_S = 10.0
"""Throughput is read less often: analytics questions are rate-limited per key."""
RUNNING_SHOWN = 20
ERRORS_SHOWN = 5


@dataclass
class Snapshot:
    queues: list[dict[str, Any]] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    minute: dict[str, Any] | None = None
    """The last full minute of ``/v1/analytics/throughput``."""
    problem: str | None = None
    """Why the last read failed, if it did (the view keeps what it had)."""


def last_full_minute(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row before the current (partial) minute."""
    return rows[-2] if len(rows) > 1 else (rows[-1] if rows else None)


class ReadError(Exception):
    """A read of the API that did not answer 200: its status and the API's message."""


def get(client: httpx.Client, path: str) -> Any:
    """The JSON of ``GET path``; ``ReadError`` with the API's message otherwise (nothing is
    printed: the live view owns the screen)."""
    try:
        r = client.get(path)
    except httpx.HTTPError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise ReadError(f"{path}: {r.status_code} {message}")
    return r.json()


def read_snapshot(client: httpx.Client, previous: Snapshot, analytics: bool) -> Snapshot:
    """The state now; what failed keeps its last value and says why in ``problem``.
    Throughput is read apart: analytics may be away or over its rate while the rest answers."""
    problems = []
    try:
        queues = get(client, "/v1/queues")["queues"]
        running = get(client, f"/v1/jobs?status=running&limit={RUNNING_SHOWN}")["jobs"]
        failed = get(client, f"/v1/jobs?status=failed&limit={ERRORS_SHOWN}")["jobs"]
    except ReadError as exc:
        queues, running, failed = previous.queues, previous.running, previous.failed
        problems.append(str(exc))
    minute = previous.minute
    if analytics:
        try:
            minute = last_full_minute(get(client, "/v1/analytics/throughput")["rows"])
        except ReadError as exc:
            problems.append(str(exc))
    return Snapshot(queues, running, failed, minute, "; ".join(problems) or None)


def live_rate(job: dict[str, Any], now: float) -> float | None:
    """A running job's tokens per second since its first token (its state has no rate yet)."""
    first = float(job.get("first_token_at") or 0) / 1e6
    if not first or now <= first:
        return None
    return float(job.get("token_count") or 0) / (now - first)


def _progress(job: dict[str, Any]) -> RenderableType:
    total = job.get("max_tokens")
    done = job.get("token_count") or 0
    if not total:
        return Text(f"{done} tokens")
    bar = ProgressBar(total=total, completed=min(done, total), width=24)
    return Group(bar, Text(f"{done}/{total}"))


def render(snap: Snapshot, now: float | None = None) -> RenderableType:
    """One frame of ``top`` for a snapshot (``now``: seconds since the epoch)."""
    now = time.time() if now is None else now
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    minute = snap.minute or {}
    head = Text.assemble(
        ("tokenrelay top", "bold"),
        f"  {stamp}   tokens/s {minute.get('tokens_per_s', 0):,.1f}"
        f"   jobs/min {minute.get('jobs', 0):,}   (last full minute)   q quits",
    )
    queues = Table(title="queues", title_justify="left", expand=True)
    for col in ("priority", "queued", "running", "oldest wait", "lag"):
        queues.add_column(col, justify="left" if col == "priority" else "right")
    for q in snap.queues:
        wait = q.get("oldest_wait_s")
        queues.add_row(
            q["priority"],
            str(q["queued"]),
            str(q["running"]),
            "-" if wait is None else f"{wait:.1f}s",
            "-" if q.get("consumer_lag") is None else str(q["consumer_lag"]),
        )
    running = Table(title=f"running ({len(snap.running)})", title_justify="left", expand=True)
    running.add_column("job", no_wrap=True, min_width=36)
    for col in ("model", "progress", "tokens/s"):
        running.add_column(col)
    for j in snap.running:
        rate = live_rate(j, now)
        running.add_row(
            j["job_id"], j.get("model") or "-", _progress(j), "-" if rate is None else f"{rate:.1f}"
        )
    errors = Table(title="recent failures", title_justify="left", expand=True)
    errors.add_column("job", no_wrap=True, min_width=36)
    errors.add_column("error")
    for j in snap.failed:
        errors.add_row(j["job_id"], f"{j.get('error_kind')}: {j.get('error_message')}")
    parts: list[RenderableType] = [head, queues, running, errors]
    if snap.problem:
        parts.append(Text(f"last read failed: {snap.problem}", style="red"))
    return Group(*parts)


@contextlib.contextmanager
def keys() -> Iterator[Any]:
    """``wait(timeout)``: the next keypress on a terminal's stdin (cbreak mode, restored
    after), or None once ``timeout`` passed; with no terminal, it only waits."""
    if not sys.stdin.isatty():

        def waited(timeout: float) -> str | None:
            time.sleep(timeout)
            return None

        yield waited
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def pressed(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def top(
    url: UrlOption = None,
    api_key: KeyOption = None,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    as_json: JsonOption = False,
) -> None:
    """A live view: queues, running jobs with progress bars, tokens/s, recent failures."""
    console = Console()
    with api_client(url, api_key, read_timeout=10.0) as client:
        snap = read_snapshot(client, Snapshot(), analytics=True)
        if as_json or once:
            if as_json:
                print_json(dataclasses.asdict(snap))
            else:
                console.print(render(snap))
            if snap.problem:
                err.print(f"[red]{snap.problem}[/red]", soft_wrap=True)
                raise typer.Exit(1)
            return
        next_analytics = time.monotonic() + ANALYTICS_EVERY_S
        with keys() as wait, Live(render(snap), console=console, auto_refresh=False) as live:
            next_read = time.monotonic() + REFRESH_S
            while True:
                if wait(max(0.0, next_read - time.monotonic())) in ("q", "Q"):
                    return
                if time.monotonic() >= next_read:
                    due = time.monotonic() >= next_analytics
                    if due:
                        next_analytics = time.monotonic() + ANALYTICS_EVERY_S
                    snap = read_snapshot(client, snap, analytics=due)
                    live.update(render(snap), refresh=True)
                    next_read = time.monotonic() + REFRESH_S
