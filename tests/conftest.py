"""Fixtures: one real broker per session, fresh topics and groups per test, running stacks."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import Settings
from tests.support.broker import kafka_broker
from tests.support.stack import running

API_KEYS = "key-admin:ops:admin,key-alice:alice:user,key-bob:bob:user"
ALICE = {"Authorization": "Bearer key-alice"}
BOB = {"Authorization": "Bearer key-bob"}
ADMIN = {"Authorization": "Bearer key-admin"}


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test process's one embedded ClickHouse: chDB allows one data directory per process.

    Tests share it and each gets a database of its own; a service run in a child
    process uses a directory of its own instead.
    """
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


def fresh_settings(
    kafka_bootstrap: str, chdb_url: str, data_dir: Path, /, **overrides: object
) -> Settings:
    """Settings with fresh uuid topics, groups and database, so tests never see each other's
    (``overrides`` may name any setting, the broker and the database included)."""
    run = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "kafka_bootstrap": kafka_bootstrap,
        "topic_prefix": f"t{run}",
        "worker_group": f"workers-{run}",
        "analytics_group": f"analytics-{run}",
        "clickhouse_url": chdb_url,
        "clickhouse_database": f"t{run}",
        "api_keys": API_KEYS,
        "data_dir": data_dir,
        "fake_tokens_per_s": 400.0,
        "worker_concurrency": 8,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_settings(kafka_bootstrap: str, chdb_url: str, tmp_path: Path) -> Iterator[object]:
    """``fresh_settings`` for one test (its data under the test's tmp_path)."""

    def make(**overrides: object) -> Settings:
        return fresh_settings(kafka_bootstrap, chdb_url, tmp_path / "data", **overrides)

    yield make


@pytest.fixture
def stack(make_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A public face with ingest, gateway and a worker in one process; yields its base URL."""
    with running(make_settings(), ["ingest", "gateway", "worker"]) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads leaked: {leaked}"
