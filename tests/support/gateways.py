"""Gateway processes for tests that kill one: ``tokenrelay serve gateway`` on a fixed port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.core.settings import Settings
from tests.support.workers import ChildProcess, child_process, settings_env


@contextmanager
def gateway_process(
    settings: Settings, log_dir: Path, port: int, name: str = "gateway"
) -> Iterator[ChildProcess]:
    """``tokenrelay serve gateway --port <port>``, ready (fan-out assigned) when yielded.

    The port is the caller's, so a gateway started again after a kill answers at
    the same address, as one behind a fixed service name would.
    """
    env = {**settings_env(settings), "TOKENRELAY_DATA_DIR": str(log_dir / name)}
    args = ["serve", "gateway", "--port", str(port)]
    with child_process(name, args, env, log_dir, port) as gateway:
        yield gateway
