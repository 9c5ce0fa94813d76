"""Debian's Chromium for the browser tests: installed by ``make tools`` when missing, and
launched by Playwright from that executable (no browser download works on this machine).

``python -m tests.support.browser`` installs it with apt-get (as root, or through sudo)
and prints its version. The flags keep Chromium off the network it would otherwise
try at start (component updates, sync, background requests), which is closed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    found = os.environ.get("TOKENRELAY_CHROMIUM") or next(
        (c for c in CANDIDATES if Path(c).exists()), None
    )
    return found or shutil.which("chromium")


def install() -> str:
    """Chromium's path, installing Debian's package first if it is not there."""
    found = chromium_path()
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing Debian's chromium with apt-get (about a minute) …", file=sys.stderr)
    cmd = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    found = chromium_path()
    if found is None:
        raise RuntimeError("apt-get installed chromium but no chromium executable was found")
    return found


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright ``Browser`` on Debian's Chromium."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no chromium: run `make tools` (it installs Debian's chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


if __name__ == "__main__":
    path = install()
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    print(version.stdout.strip() or path)
