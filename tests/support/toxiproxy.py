"""Toxiproxy (Shopify's TCP proxy with faults) between the services and the broker.

The server binary is built once with ``go install`` into a cache outside the
repository (``~/.cache/tokenrelay/tools/toxiproxy-<version>``), as the Kafka jars
are fetched with ``mvn``. A test starts it on a free port and drives it over its
HTTP API: a proxy per upstream, toxics (latency, bandwidth) added and removed,
the proxy disabled to cut every connection through it and re-enabled.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from services.localdev.kafka import free_port
from tests.support.go_tools import go_install

VERSION = "v2.12.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def binary() -> Path:
    """The toxiproxy server, built with ``go install`` on first use."""
    return go_install("toxiproxy", MODULE, VERSION, "server")


class Toxiproxy:
    def __init__(self, api: httpx.Client) -> None:
        self.api = api

    def proxy(self, name: str, listen_port: int, upstream: str) -> None:
        r = self.api.post(
            "/proxies",
            json={"name": name, "listen": f"127.0.0.1:{listen_port}", "upstream": upstream},
        )
        assert r.status_code in (200, 201), r.text

    def add(self, proxy: str, toxic: str, stream: str, **attributes: Any) -> str:
        """Add a toxic to one direction (``upstream``: to the broker; ``downstream``: back)."""
        name = f"{toxic}-{stream}"
        r = self.api.post(
            f"/proxies/{proxy}/toxics",
            json={"name": name, "type": toxic, "stream": stream, "attributes": attributes},
        )
        assert r.status_code == 200, r.text
        return name

    def remove(self, proxy: str, toxic: str) -> None:
        r = self.api.delete(f"/proxies/{proxy}/toxics/{toxic}")
        assert r.status_code == 204, r.text

    def enabled(self, proxy: str, on: bool) -> None:
        """Off: every connection through the proxy is cut and new ones are refused."""
        r = self.api.post(f"/proxies/{proxy}", json={"enabled": on})
        assert r.status_code == 200, r.text


@contextmanager
def toxiproxy(log_dir: Path) -> Iterator[Toxiproxy]:
    """A toxiproxy server on a free port until the block ends."""
    port = free_port()
    with (log_dir / "toxiproxy.log").open("ab") as out:
        proc = subprocess.Popen(
            [str(binary()), "-host", "127.0.0.1", "-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{api}/version", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "toxiproxy exited at start"
            assert time.monotonic() < deadline, "toxiproxy did not answer in 30s"
            time.sleep(0.1)
        with httpx.Client(base_url=api, timeout=10) as client:
            yield Toxiproxy(client)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    print(binary())
