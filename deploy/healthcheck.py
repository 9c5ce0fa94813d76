#!/opt/tokenrelay/bin/python
"""The image's HEALTHCHECK: GET /healthz of the part running in this container.

The port is the part's own: ``TOKENRELAY_HEALTH_PORT`` if set, else the
aggregator's port for ``tokenrelay aggregator`` (PID 1's command line says which),
else ``TOKENRELAY_HTTP_PORT``. Exit 0 when it answers 200 within 2 s.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def port(cmdline: Sequence[bytes], env: Mapping[str, str]) -> str:
    if "TOKENRELAY_HEALTH_PORT" in env:
        return env["TOKENRELAY_HEALTH_PORT"]
    if b"aggregator" in cmdline:
        return env.get("TOKENRELAY_AGGREGATOR_PORT", "6066")
    return env.get("TOKENRELAY_HTTP_PORT", "8000")


def pid1_cmdline() -> list[bytes]:
    try:
        return Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def main() -> int:
    url = f"http://127.0.0.1:{port(pid1_cmdline(), os.environ)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy"
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
