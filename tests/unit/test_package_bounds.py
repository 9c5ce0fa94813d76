"""What ships: no module of the package imports the benchmarks, and `tokenrelay bench`
outside a checkout says where it must run instead of failing on an import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_shipped_module_imports_bench_at_load_time() -> None:
    code = (
        "import sys, importlib, pkgutil, services, schemas\n"
        "for pkg in (services, schemas):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'bench' or n.startswith('bench.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_bench_outside_a_checkout_says_it_needs_one(tmp_path: Path) -> None:
    """The package alone, as a wheel installs it: no bench/ beside it, none importable."""
    for package in ("services", "schemas"):
        shutil.copytree(ROOT / package, tmp_path / package)
    code = (
        "import sys; sys.modules['bench'] = None  # no harness anywhere\n"
        "import services.cli as cli\n"
        f"assert cli.__file__.startswith({str(tmp_path)!r}), cli.__file__\n"
        "cli.app()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "bench", "max"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONSAFEPATH": "", "COLUMNS": "200"},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not part of the installed package" in out.stderr
    assert "run it from a clone" in out.stderr
