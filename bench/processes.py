"""The processes of a benchmark: a service in a child process, helpers driven over a pipe, and
what ``/proc`` says about each (resident memory, CPU time).

A helper (the SSE clients, the synthetic worker) runs in a ``spawn``-ed process and
answers commands, one at a time, over a ``multiprocessing`` pipe: ``Remote.call``
sends ``(name, *args)`` and waits for the reply; in the helper, ``serve_commands``
awaits each command while the helper's own tasks keep running on its loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.child import log_complaints, log_tail

TICKS_PER_S = os.sysconf("SC_CLK_TCK")

Handler = Callable[..., Awaitable[Any]]


class RemoteError(RuntimeError):
    """A helper's command failed; the message is the helper's traceback."""


# --- /proc ------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS), in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used, all its threads included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over its CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / TICKS_PER_S, total / TICKS_PER_S


@dataclass
class CpuMeter:
    """CPU % of groups of processes (100 % = one core) and of the machine, between ``lap``s."""

    pids: dict[str, list[int]]
    _last: dict[str, float] = field(default_factory=dict)
    _at: float = 0.0

    def __post_init__(self) -> None:
        self.lap()

    def _now(self) -> dict[str, float]:
        busy, total = machine_busy_s()
        now = {name: sum(cpu_s(pid) for pid in pids) for name, pids in self.pids.items()}
        return now | {"_busy": busy, "_total": total}

    def lap(self) -> dict[str, float]:
        """CPU % of each group since the last lap; ``machine``: busy % of all CPUs together;
        ``others``: CPU % of every other process (the broker, and anything else running)."""
        now, at = self._now(), time.monotonic()
        last, elapsed = self._last, at - self._at
        self._last, self._at = now, at
        if not last or elapsed <= 0:
            return {}
        out = {name: 100 * (now[name] - last[name]) / elapsed for name in self.pids}
        total = now["_total"] - last["_total"]
        busy = now["_busy"] - last["_busy"]
        out["machine"] = 100 * busy / total if total else 0.0
        out["others"] = 100 * busy / elapsed - sum(out[name] for name in self.pids)
        return out


# --- helpers over a pipe ------------------------------------------------------------


class Remote:
    """A helper process started with ``spawn``; ``call`` is one command and its reply."""

    def __init__(self, name: str, target: Callable[..., None], *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self._conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child_end, *args), name=name, daemon=True)
        self.proc.start()
        child_end.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def call(self, command: str, *args: Any, timeout: float = 120.0) -> Any:
        self.ask(command, *args)
        return self.answer(command, timeout)

    def ask(self, command: str, *args: Any) -> None:
        """Send a command without waiting (``answer`` takes the reply), to run helpers in step."""
        self._conn.send((command, *args))

    def answer(self, command: str, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self._conn.poll(0.5):
            if not self.proc.is_alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.exitcode}) during {command}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {command} in {timeout:.0f}s")
        reply = self._conn.recv()
        if isinstance(reply, RemoteError):
            raise reply
        return reply

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self.call("close", timeout=30)
            except (RuntimeError, TimeoutError, OSError):
                self.proc.kill()
        self.proc.join(10)
        self._conn.close()


def call_all(
    remotes: list[Remote], command: str, args: list[tuple[Any, ...]], timeout: float
) -> list[Any]:
    """``command`` on every helper at once (``args[i]`` for the i-th); their replies in order."""
    for remote, a in zip(remotes, args, strict=True):
        remote.ask(command, *a)
    return [remote.answer(command, timeout) for remote in remotes]


async def serve_commands(conn: Connection, handlers: dict[str, Handler]) -> None:
    """Answer ``(name, *args)`` commands until ``close``; a failing handler's error is the reply."""
    while True:
        name, *args = await asyncio.to_thread(conn.recv)
        try:
            reply = await handlers[name](*args)
        except Exception:  # sent to the parent, which raises it
            reply = RemoteError(traceback.format_exc())
        conn.send(reply)
        if name == "close":
            return


def use_uvloop() -> str:
    """Run the helper's loop on uvloop when it is installed (uvicorn[standard] brings it)."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# --- a service in a child process ---------------------------------------------------


@dataclass
class ServiceChild:
    """``tokenrelay serve <names> --port <port>`` with ``env`` added, logging to ``log``."""

    names: list[str]
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    command: list[str] | None = None
    """The ``tokenrelay`` arguments when not ``serve <names> --port <port>`` (the aggregator)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> float:
        """Start it and wait until ``/readyz`` answers 200; the seconds that took."""
        args = self.command or ["serve", *self.names, "--port", str(self.port)]
        cmd = [sys.executable, "-m", "services.cli", *args]
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.names} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{self.names} not ready in {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{'name{labels}': value}`` (comments left out)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def complaints(self) -> Counter[str]:
        return log_complaints(self.log)
