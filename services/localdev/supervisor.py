"""Keeping ``tokenrelay up``'s children alive: restart with backoff, give up on a crash loop.

A child that exits is started again after a pause that grows with its recent
failures (``RestartPolicy``); one line says so, with its exit code and log.
When a child has failed ``max_failures`` times within ``window_s`` it would only
crash again, so the supervisor gives up and the stack stops, naming the part
and its log. Children are reaped as they exit (``Popen.poll``): no zombies.
A child that serves HTTP is handed its listening socket, which the supervisor
holds for its whole life: a restart never has to win its port back.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)
    max_failures: int = 3
    window_s: float = 60.0

    def delay(self, failures: list[float], now: float) -> float | None:
        """Seconds until the restart after the latest failure, or None: give up.

        ``failures`` are the monotonic times the child exited; those older than
        ``window_s`` are forgotten, so a part that ran well for a while starts afresh.
        """
        recent = [t for t in failures if now - t <= self.window_s]
        if len(recent) >= self.max_failures:
            return None
        return self.backoff_s[min(len(recent), len(self.backoff_s)) - 1] if recent else 0.0


class CrashLoopError(Exception):
    """A child failed too often in a row; the message names it and its log."""


@dataclass
class Child:
    """One supervised ``tokenrelay`` command, its log, and its recent failures."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str]
    listener: socket.socket | None = None
    """A listening socket held here and handed to every start (``--fd``)."""
    proc: subprocess.Popen[bytes] | None = None
    failures: list[float] = field(default_factory=list)
    restart_at: float | None = None
    _out: IO[bytes] | None = None

    def start(self) -> None:
        if self._out is None:
            self._out = self.log.open("ab")
        args, fds = self.args, tuple[int, ...]()
        if self.listener is not None:
            fds = (self.listener.fileno(),)
            args = [*args, "--fd", str(fds[0])]
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "services.cli", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self.env,
            pass_fds=fds,
        )
        self.restart_at = None

    def stop(self, timeout: float = 40.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        say: Callable[[str], None],
        policy: RestartPolicy | None = None,
    ) -> None:
        self.children = children
        self.say = say
        self.policy = policy or RestartPolicy()

    def start(self) -> None:
        for child in self.children:
            child.start()

    def tick(self, now: float | None = None) -> None:
        """Notice exits, restart what is due; raises ``CrashLoopError`` on a crash loop."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    child.start()
                    assert child.proc is not None
                    self.say(f"{child.name} restarted, pid {child.proc.pid}")
                continue
            code = child.proc.poll()
            if code is None:
                continue
            child.proc = None
            child.failures.append(now)
            delay = self.policy.delay(child.failures, now)
            if delay is None:
                raise CrashLoopError(
                    f"{child.name} exited {self.policy.max_failures} times in "
                    f"{self.policy.window_s:.0f}s (last exit code {code}); see {child.log}"
                )
            self.say(f"{child.name} exited with code {code}; restarting in {delay:.0f}s")
            child.restart_at = now + delay

    def stop_all(self) -> None:
        """SIGTERM every running child, last started first, then wait for each."""
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            child.stop()
