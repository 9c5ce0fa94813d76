"""Go programs the tests drive, built once with ``go install`` outside the repository.

They land in ``~/.cache/tokenrelay/tools/<name>-<version>`` (``TOKENRELAY_TOOLS_DIR``),
as the Kafka jars land in a cache of their own; a second call finds the binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(
    os.environ.get("TOKENRELAY_TOOLS_DIR", Path.home() / ".cache" / "tokenrelay" / "tools")
)


def go_install(name: str, module: str, version: str, binary: str) -> Path:
    """``binary`` of ``module@version``, built with ``go install`` on first use."""
    gobin = CACHE / f"{name}-{version}"
    built = gobin / binary
    if built.exists():
        return built
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"go not found: {name} is built with `go install`")
    gobin.mkdir(parents=True, exist_ok=True)
    print(f"building {name} {version} with go install into {gobin} …", file=sys.stderr)
    result = subprocess.run(
        [go, "install", f"{module}@{version}"],
        env={**os.environ, "GOBIN": str(gobin)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go install {module}@{version} failed:\n{result.stderr[-3000:]}")
    return built
