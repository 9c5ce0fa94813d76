"""The Dockerfile, read as the builder would (no Docker engine runs here), and its healthcheck."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from services.localdev.kafka import free_port
from tests.support.manifests import ROOT

BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "cargo", "rustc")


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (instruction, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append((op.upper(), rest.strip()))
    return out


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    build, *_, final = stages()
    assert len(stages()) >= 2
    froms = [args for op, args in build + final if op == "FROM"]
    assert all("slim" in f or "PYTHON_IMAGE" in f for f in froms)
    arg = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in arg
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(op == "HEALTHCHECK" and "tokenrelay-healthcheck" in args for op, args in final)
    labels = " ".join(args for op, args in final if op == "LABEL")
    for key in ("title", "description", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    runs = " ".join(args for op, args in final if op == "RUN")
    assert not [t for t in BUILD_TOOLS if t in runs], "no build tools in the last stage"
    assert ("ENTRYPOINT", '["tokenrelay"]') in final


def test_what_the_build_copies_exists_and_is_not_ignored() -> None:
    copied = []
    for stage in stages():
        for op, args in stage:
            if op == "COPY":
                parts = [p for p in args.split() if not p.startswith("--")]
                copied += parts[:-1]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[0].startswith("#") and "*" in ignore, "everything is ignored but what is named"
    for path in copied:
        assert (ROOT / path).exists(), path
        assert (
            f"!{path.rstrip('/')}" in {line.rstrip("/") for line in ignore} or f"!{path}" in ignore
        ), path


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthy_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
        env={"TOKENRELAY_HEALTH_PORT": str(port), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_the_healthcheck_passes_on_a_200_and_fails_on_a_closed_port(healthy_port: int) -> None:
    assert healthcheck(healthy_port).returncode == 0
    down = healthcheck(free_port())
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_the_healthcheck_asks_the_port_of_the_part_the_container_runs() -> None:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    hc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hc)
    tokenrelay = [b"/opt/tokenrelay/bin/python", b"/opt/tokenrelay/bin/tokenrelay"]
    assert hc.port([*tokenrelay, b"aggregator"], {}) == "6066"
    assert hc.port([*tokenrelay, b"aggregator"], {"TOKENRELAY_AGGREGATOR_PORT": "7000"}) == "7000"
    assert hc.port([*tokenrelay, b"serve", b"worker"], {"TOKENRELAY_HTTP_PORT": "8001"}) == "8001"
    assert hc.port([*tokenrelay, b"serve", b"ingest"], {}) == "8000"
    assert hc.port([], {"TOKENRELAY_HEALTH_PORT": "9"}) == "9"
    assert (ROOT / "deploy" / "healthcheck.py").stat().st_mode & 0o111, "executable in git too"
