"""Run composed services in a background thread of the test process, on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from services.core.settings import Settings
from services.serve import build_app
from tests.support.broker import free_port


@contextmanager
def running(settings: Settings, names: list[str], ready_path: str = "/readyz") -> Iterator[str]:
    """Serve ``names`` until the block ends; yields the base URL once ``ready_path`` is 200."""
    port = free_port()
    config = uvicorn.Config(
        build_app(settings, names),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"stack-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    last = ""
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("the stack exited during start")
            try:
                r = httpx.get(base + ready_path, timeout=2)
                if r.status_code == 200:
                    break
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"stack not ready: {last}")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=60)
