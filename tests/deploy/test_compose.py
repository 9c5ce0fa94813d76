"""docker-compose.yml as Compose v2 itself reads it (its real binary: no engine needed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy_tools import compose_binary
from tests.support.manifests import ROOT, setting_env_names

LAPTOP = ROOT / "deploy" / "compose" / "laptop.env"
EXAMPLE = ROOT / ".env.example"
OURS = {"public", "worker", "aggregator-1", "aggregator-2"}


def compose(
    *args: str, env_files: tuple[Path, ...] = (EXAMPLE,)
) -> subprocess.CompletedProcess[str]:
    files = [a for f in env_files for a in ("--env-file", str(f))]
    return subprocess.run(
        [
            str(compose_binary()),
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            *files,
            *args,
        ],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "DOCKER_HOST": "unix:///nonexistent.sock",
        },
        timeout=60,
        check=False,
    )


def resolved(*profile: str, env_files: tuple[Path, ...] = (EXAMPLE,)) -> dict[str, Any]:
    out = compose(*profile, "config", "--format", "json", env_files=env_files)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("profile", "env_files"),
    [
        ((), (EXAMPLE,)),
        ((), (EXAMPLE, LAPTOP)),
        (("--profile", "monitoring"), (EXAMPLE,)),
        (("--profile", "*"), (EXAMPLE,)),
    ],
    ids=["cluster", "laptop", "monitoring", "every-profile"],
)
def test_compose_accepts_the_file(profile: tuple[str, ...], env_files: tuple[Path, ...]) -> None:
    out = compose(*profile, "config", "-q", env_files=env_files)
    assert out.returncode == 0, out.stderr


def test_three_kafka_nodes_by_default_one_on_a_laptop() -> None:
    cluster = resolved()["services"]
    assert {"kafka-1", "kafka-2", "kafka-3"} | OURS | {"clickhouse"} == set(cluster)
    laptop = resolved(env_files=(EXAMPLE, LAPTOP))["services"]
    assert {"kafka"} | OURS | {"clickhouse"} == set(laptop)
    monitoring = resolved("--profile", "monitoring")["services"]
    assert {"prometheus", "grafana"} <= set(monitoring)
    for services, nodes, replication in ((cluster, 3, "3"), (laptop, 1, "1")):
        brokers = [s for s in services if s.startswith("kafka")]
        assert len(brokers) == nodes
        voters = services[brokers[0]]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert len(voters.split(",")) == nodes
        for name in OURS:
            env = services[name]["environment"]
            assert sorted(env["TOKENRELAY_KAFKA_BOOTSTRAP"].split(",")) == sorted(
                f"{b}:9092" for b in brokers
            )
            assert env["TOKENRELAY_REPLICATION_FACTOR"] == replication
        for b in brokers:
            env = services[b]["environment"]
            assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == replication
            assert env["KAFKA_MIN_INSYNC_REPLICAS"] == ("2" if nodes == 3 else "1")
            assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == replication


def test_our_services_wait_for_healthy_brokers_and_clickhouse() -> None:
    services = resolved()["services"]
    for name in OURS:
        needs = services[name]["depends_on"]
        for broker in ("kafka-1", "kafka-2", "kafka-3"):
            assert needs[broker]["condition"] == "service_healthy", name
    assert services["public"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("kafka-1", "clickhouse"):
        assert services[name]["healthcheck"]["test"], name


def test_workers_aggregators_and_the_public_face_are_set_up_as_the_code_expects() -> None:
    services = resolved()["services"]
    known = setting_env_names()
    for name in OURS:
        env = services[name]["environment"]
        assert not {k for k in env if k not in known}, name
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    grace = float(worker["environment"]["TOKENRELAY_WORKER_GRACE_S"])
    assert int(worker["stop_grace_period"].rstrip("s")) > grace
    instances = set()
    for name in ("aggregator-1", "aggregator-2"):
        env = services[name]["environment"]
        instances.add(env["TOKENRELAY_AGGREGATOR_INSTANCE"])
        assert env["TOKENRELAY_AGGREGATOR_ADVERTISED_URL"] == f"http://{name}:6066"
        (volume,) = services[name]["volumes"]
        assert volume["type"] == "volume" and volume["target"] == "/var/lib/tokenrelay"
    assert len(instances) == 2
    public = services["public"]["environment"]
    assert (
        public["TOKENRELAY_CLICKHOUSE_URL"].startswith("http://")
        and "@clickhouse:8123" in public["TOKENRELAY_CLICKHOUSE_URL"]
    )


def test_every_variable_the_file_reads_is_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = {
        line.split("=", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert read - {"COMPOSE_PROFILES"} <= example, read - example
    assert "COMPOSE_PROFILES" in example


def test_a_missing_secret_stops_compose_with_its_name(tmp_path: Path) -> None:
    lines = [
        line
        for line in EXAMPLE.read_text().splitlines()
        if not line.startswith("CLICKHOUSE_PASSWORD=")
    ]
    env = tmp_path / "no-password.env"
    env.write_text("\n".join(lines) + "\n")
    out = compose("config", "-q", env_files=(env,))
    assert out.returncode != 0
    assert "CLICKHOUSE_PASSWORD" in out.stderr
