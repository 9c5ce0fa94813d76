"""Where the tests' Kafka comes from: the env, a container, or a local broker we start."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import httpx

from services.core.settings import Settings
from services.localdev.kafka import throwaway_broker


class BrokerSource(StrEnum):
    ENV = "env"
    CONTAINER = "container"
    LOCAL = "local"


def choose_source(env: Mapping[str, str], docker_answers: bool) -> BrokerSource:
    """TOKENRELAY_KAFKA_BOOTSTRAP if set, else testcontainers if Docker answers, else local."""
    if env.get("TOKENRELAY_KAFKA_BOOTSTRAP"):
        return BrokerSource.ENV
    if docker_answers:
        return BrokerSource.CONTAINER
    return BrokerSource.LOCAL


def docker_answers() -> bool:
    """Whether a Docker engine answers ``/_ping`` on DOCKER_HOST or the default socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        path = host.removeprefix("unix://")
        if not Path(path).exists():
            return False
        transport, url = httpx.HTTPTransport(uds=path), "http://docker/_ping"
    else:
        transport, url = httpx.HTTPTransport(), host.replace("tcp://", "http://") + "/_ping"
    try:
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def kafka_broker(root: Path) -> Iterator[str]:
    """Yield a bootstrap address for the whole test session."""
    source = choose_source(os.environ, docker_answers())
    if source is BrokerSource.ENV:
        yield os.environ["TOKENRELAY_KAFKA_BOOTSTRAP"]
    elif source is BrokerSource.CONTAINER:
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        broker = throwaway_broker(root, Settings())
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
