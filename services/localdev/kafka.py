"""A single-node KRaft broker for one machine, built from Apache Kafka's own jars.

``fetch`` resolves the broker's jars with ``mvn dependency:copy-dependencies``
into a cache outside the repository (``TOKENRELAY_KAFKA_CACHE_DIR``, per
version); ``start`` formats KRaft storage under the data dir once, launches
``kafka.Kafka`` with Java and waits until a client gets metadata; ``stop``
sends SIGTERM, waits for a clean shutdown, and only then kills.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from services.core.errors import ConfigError, KafkaUnavailableError
from services.core.kafka import Admin
from services.core.settings import Settings

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent


def require_tools() -> tuple[str, str]:
    """Paths of ``java`` and ``mvn``, or a one-line ``ConfigError`` saying what to do."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None:
        raise ConfigError(
            "java not found: install Java 17+ (e.g. apt-get install openjdk-17-jre-headless), "
            "or set TOKENRELAY_KAFKA_BOOTSTRAP to a running Kafka"
        )
    if mvn is None:
        raise ConfigError(
            "mvn not found: install Maven (e.g. apt-get install maven), "
            "or set TOKENRELAY_KAFKA_BOOTSTRAP to a running Kafka"
        )
    return java, mvn


def fetch(version: str, cache_dir: Path) -> Path:
    """The directory of Kafka ``version``'s jars, fetched with Maven on first use."""
    libs = cache_dir / version / "libs"
    done = cache_dir / version / ".complete"
    if done.exists():
        return libs
    _, mvn = require_tools()
    work = cache_dir / version
    work.mkdir(parents=True, exist_ok=True)
    pom = (_HERE / "kafka-runtime.pom.xml").read_text().replace("@KAFKA_VERSION@", version)
    (work / "pom.xml").write_text(pom)
    print(f"fetching Apache Kafka {version} jars with mvn into {libs} …", file=sys.stderr)  # noqa: T201
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise ConfigError(f"mvn could not fetch Kafka {version}:\n" + "\n".join(tail))
    done.touch()
    jars = len(list(libs.glob("*.jar")))
    print(f"fetched {jars} jars in {time.monotonic() - started:.0f}s", file=sys.stderr)  # noqa: T201
    return libs


@dataclass(frozen=True)
class BrokerPaths:
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"

    @property
    def output(self) -> Path:
        return self.root / "broker.log"


def server_properties(
    host: str,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = 1,
    voters: str | None = None,
    replicas: int = 1,
    advertised_port: int | None = None,
    sasl_port: int | None = None,
) -> str:
    """One KRaft node, broker and controller both; ``voters`` lists every controller.

    ``replicas`` (min(3, nodes)) is the replication of Kafka's own topics; with
    more than one, a write needs two in-sync replicas (``min.insync.replicas=2``).
    ``advertised_port`` sends clients elsewhere (a proxy in front of ``port``).
    ``sasl_port`` adds a listener that admits only SCRAM users (made at format time).
    """
    min_isr = min(2, replicas)
    listeners = f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}"
    advertised = f"PLAINTEXT://{host}:{advertised_port or port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    sasl: list[str] = []
    if sasl_port is not None:
        listeners += f",SASL_PLAINTEXT://{host}:{sasl_port}"
        advertised += f",SASL_PLAINTEXT://{host}:{sasl_port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        sasl = [
            "inter.broker.listener.name=PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256",
            *(
                f"listener.name.sasl_plaintext.{m}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for m in ("scram-sha-512", "scram-sha-256")
            ),
        ]
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters or f'{node_id}@{host}:{controller_port}'}",
            f"listeners={listeners}",
            f"advertised.listeners={advertised}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={protocols}",
            *sasl,
            f"log.dirs={log_dir}",
            "num.partitions=3",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            "transaction.state.log.num.partitions=6",
            "group.initial.rebalance.delay.ms=0",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "",
        ]
    )


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"TOKENRELAY_KAFKA_BOOTSTRAP {bootstrap!r} is not host:port")
    return host, int(port)


class LocalBroker:
    """One broker process whose state lives under ``root``."""

    def __init__(
        self,
        root: Path,
        host: str,
        port: int,
        controller_port: int,
        version: str,
        cache_dir: Path,
        *,
        node_id: int = 1,
        voters: str | None = None,
        replicas: int = 1,
        cluster_id: str | None = None,
        advertised_port: int | None = None,
        sasl_port: int | None = None,
        scram_users: Mapping[str, str] | None = None,
    ) -> None:
        self.paths = BrokerPaths(root)
        self.advertised_port = advertised_port
        self.sasl_port = sasl_port
        self.scram_users = dict(scram_users or {})
        """SCRAM users (name: password) of the SASL listener, made when storage is formatted."""
        self.host, self.port, self.controller_port = host, port, controller_port
        self.version, self.cache_dir = version, cache_dir
        self.node_id, self.voters, self.replicas = node_id, voters, replicas
        self.cluster_id = cluster_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        java, _ = require_tools()
        return [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_HERE / 'log4j2.yaml'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def format(self, libs: Path) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(
            server_properties(
                self.host,
                self.port,
                self.controller_port,
                self.paths.logs,
                self.node_id,
                self.voters,
                self.replicas,
                self.advertised_port,
                self.sasl_port,
            )
        )
        if (self.paths.logs / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or new_cluster_id()
        cmd = self._java(
            libs,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # an id may start with "-"
            "-c",
            str(self.paths.config),
            *(
                arg
                for name, password in self.scram_users.items()
                for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
                for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
            ),
        )
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)  # noqa: S603
        if result.returncode != 0:
            raise ConfigError(f"formatting KRaft storage failed: {result.stdout}{result.stderr}")

    def running_pid(self) -> int | None:
        """The broker's pid if it is alive; a dead child of ours is reaped, not mistaken for one."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            if self._out is not None:
                self._out.close()
                self._out = None
        try:
            pid = int(self.paths.pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        _reap(pid)
        return pid if alive(pid) else None

    def start(self, timeout: float = 90.0) -> int:
        """Start the broker (unless it runs) and wait until it serves metadata; returns its pid."""
        pid = self.launch()
        self.wait_ready(timeout)
        return pid

    def launch(self) -> int:
        """Start the broker process unless it runs; returns its pid without waiting."""
        pid = self.running_pid()
        if pid is None:
            if port_open(self.host, self.port):
                raise ConfigError(
                    f"port {self.port} is taken by another process: stop it or set "
                    "TOKENRELAY_KAFKA_BOOTSTRAP to another host:port"
                )
            libs = fetch(self.version, self.cache_dir)
            self.format(libs)
            self._out = self.paths.output.open("ab")
            self._proc = subprocess.Popen(  # noqa: S603
                self._java(libs, "kafka.Kafka", str(self.paths.config)),
                stdout=self._out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            pid = self._proc.pid
            self.paths.pid.write_text(str(pid))
            log.info("kafka node %d starting, pid %d, %s", self.node_id, pid, self.bootstrap)
        return pid

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                tail = self.paths.output.read_text(errors="replace")[-3000:]
                raise KafkaUnavailableError(f"the broker exited during start:\n{tail}")
            if port_open(self.host, self.port):
                try:  # the broker must answer a real metadata request
                    asyncio.run(Admin(self.bootstrap).topics(timeout=2.0))
                    return
                except KafkaUnavailableError:
                    pass
            time.sleep(0.2)
        raise KafkaUnavailableError(f"the broker at {self.bootstrap} was not ready in {timeout}s")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait for a clean exit, then SIGKILL. True if a broker was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        self.wait_stopped(pid, timeout)
        return True

    def signal_stop(self) -> int | None:
        """SIGTERM without waiting (a cluster stops every node at once); the pid signalled."""
        pid = self.running_pid()
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running_pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.running_pid() is not None:
            log.warning("kafka broker pid %d did not stop in %.0fs; killing it", pid, timeout)
            os.killpg(pid, signal.SIGKILL)
            _reap(pid)
        self.paths.pid.unlink(missing_ok=True)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None
        log.info("kafka node %d stopped", self.node_id)


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal
    return stat.rpartition(")")[2].split()[0] != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)


def throwaway_broker(
    root: Path,
    settings: Settings,
    advertised_port: int | None = None,
    *,
    scram_users: Mapping[str, str] | None = None,
) -> LocalBroker:
    """A single-node broker under ``root`` on free local ports, of the settings' Kafka version,
    for tests and benchmarks (``advertised_port``: a proxy in front of it; ``scram_users``:
    a SASL listener on ``sasl_port`` that admits them)."""
    return LocalBroker(
        root,
        "127.0.0.1",
        free_port(),
        free_port(),
        settings.kafka_version,
        settings.kafka_cache_dir,
        advertised_port=advertised_port,
        sasl_port=free_port() if scram_users else None,
        scram_users=scram_users,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now, for throwaway brokers and servers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports_after(count: int) -> int:
    """A free port p with p + 1 … p + ``count`` free too (``up`` serves its workers, and
    analytics when it runs alone, on the ports after the public face's)."""
    while True:
        port = free_port()
        if all(_bindable(port + i) for i in range(1, count + 1)):
            return port


@dataclass(frozen=True)
class NodeStatus:
    id: int
    port: int
    pid: int | None
    up: bool


class LocalCluster:
    """``nodes`` KRaft nodes on one machine, each a broker and a controller.

    Node ``i`` (1-based) serves clients on ``port + i - 1`` and its controller on
    ``port + nodes + i - 1``: with the default 9092 and three nodes, clients use
    9092-9094 and the controllers 9095-9097. One node keeps the layout of a single
    broker (controller on ``port + 1``). Each node's state lives in ``root/node-<i>``;
    every node is formatted with the cluster id kept in ``root/cluster.id``.
    """

    def __init__(
        self, root: Path, host: str, port: int, nodes: int, version: str, cache_dir: Path
    ) -> None:
        if nodes < 1:
            raise ConfigError("a Kafka cluster needs at least one node")
        formatted = stored_size(root)
        if formatted is not None and formatted != nodes:
            raise ConfigError(
                f"the local Kafka under {root} has {formatted} nodes, not {nodes}: "
                f"use --brokers {formatted}, or stop it and remove {root} to start afresh"
            )
        self.root, self.host, self.port = root, host, port
        replicas = min(3, nodes)
        voters = ",".join(f"{i}@{host}:{port + nodes + i - 1}" for i in range(1, nodes + 1))
        self.nodes = [
            LocalBroker(
                root / f"node-{i}",
                host,
                port + i - 1,
                port + nodes + i - 1,
                version,
                cache_dir,
                node_id=i,
                voters=voters,
                replicas=replicas,
            )
            for i in range(1, nodes + 1)
        ]

    def _cluster_id(self) -> str:
        """The id every node is formatted with, made on the first start, not by a look."""
        path = self.root / "cluster.id"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    @property
    def replicas(self) -> int:
        return self.nodes[0].replicas

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        return self.nodes[node_id - 1]

    def down(self) -> list[LocalBroker]:
        return [n for n in self.nodes if n.running_pid() is None]

    def start(self, timeout: float = 120.0) -> list[int]:
        """Start every node that is down (the others keep running); wait until all answer.

        All are launched before any is waited for: a node of a quorum serves only
        once a majority of the controllers runs.
        """
        started = [n.node_id for n in self.down()]
        cluster_id = self._cluster_id()
        (self.root / "nodes").write_text(str(len(self.nodes)))
        for n in self.nodes:
            n.cluster_id = cluster_id
            n.launch()
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            n.wait_ready(max(1.0, deadline - time.monotonic()))
        return started

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM to every node at once, then wait (a quorum stopped one by one stalls)."""
        signalled = [(n, n.signal_stop()) for n in self.nodes]
        for n, pid in signalled:
            if pid is not None:
                n.wait_stopped(pid, timeout)
        return [n.node_id for n, pid in signalled if pid is not None]

    def status(self) -> list[NodeStatus]:
        out = []
        for n in self.nodes:
            pid = n.running_pid()
            answers = pid is not None and port_open(n.host, n.port)
            out.append(NodeStatus(n.node_id, n.port, pid, answers))
        return out


def stored_size(root: Path) -> int | None:
    """How many nodes the cluster under ``root`` was started with, if it ever was."""
    try:
        return int((root / "nodes").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
