"""The stack a run measures: one that already runs (``--url``, ``--api-key``), or our own.

Our own is built fresh for each scenario, so no scenario inherits another's backlog:
a temp data dir, a fresh topic prefix and worker group on the run's broker (``broker``:
``TOKENRELAY_KAFKA_BOOTSTRAP`` when it answers, else a throwaway local one, as
``bench.worker_scheduling.broker`` does; one for every scenario of a run, warmed
first), then ``tokenrelay serve worker --port P+1`` and ``tokenrelay serve ingest
gateway --port P`` as child processes with the fake provider (or, for
``--provider openai``, the ``openai`` provider against the bench's upstream). No aggregator
unless ``--freshness`` (then the aggregator and the analytics sink too, as ``make up``):
streams find a job's first event in the gateway's memory of recent records (or by a
seek). Everything is stopped when the block ends, on an error or Ctrl-C too.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.processes import ServiceChild
from bench.worker_scheduling import broker as broker_for
from services.core.settings import Settings
from services.localdev.kafka import free_port

API_KEY = "bench-key"


@dataclass(frozen=True)
class Stack:
    url: str
    api_key: str
    children: list[ServiceChild] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def pids(self) -> dict[str, list[int]]:
        return {" ".join(c.names): [c.pid] for c in self.children}


@contextmanager
def broker() -> Iterator[str]:
    """The run's broker: the one at ``TOKENRELAY_KAFKA_BOOTSTRAP``, else a throwaway one."""
    with broker_for(Settings()) as bootstrap:
        yield bootstrap


@contextmanager
def own_stack(
    bootstrap: str,
    worker_concurrency: int,
    openai_url: str | None = None,
    whole: bool = False,
) -> Iterator[Stack]:
    """A fresh stack on the broker at ``bootstrap`` whose worker runs ``worker_concurrency``
    jobs at once, with the ``openai`` provider pointed at ``openai_url`` when given;
    ``whole``: as ``make up`` runs it, with the aggregator and the analytics sink (the
    freshness figures)."""
    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tr-bench-")))
        tag = uuid.uuid4().hex[:8]
        env = {
            "TOKENRELAY_KAFKA_BOOTSTRAP": bootstrap,
            "TOKENRELAY_TOPIC_PREFIX": f"bench{tag}",
            "TOKENRELAY_WORKER_GROUP": f"bench-workers-{tag}",
            "TOKENRELAY_WORKER_CONCURRENCY": str(worker_concurrency),
            "TOKENRELAY_API_KEYS": f"{API_KEY}:bench:admin",
            "TOKENRELAY_DATA_DIR": str(data),
            "TOKENRELAY_LOG_LEVEL": "WARNING",
            "TOKENRELAY_BATCH_MAX_JOBS": "100000",
            # Its jobs are throwaway: on Ctrl-C the worker need not let them finish.
            "TOKENRELAY_WORKER_GRACE_S": "1",
        }
        if openai_url is not None:
            env |= {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": openai_url}
        port = free_port()
        children = []
        face = ["ingest", "gateway"]
        if whole:
            agg = free_port()
            env |= {
                "TOKENRELAY_AGGREGATOR_PORT": str(agg),
                "TOKENRELAY_AGGREGATOR_URL": f"http://127.0.0.1:{agg}",
            }
            log = data / "aggregator.log"
            children.append(ServiceChild(["aggregator"], agg, env, log, command=["aggregator"]))
            face.append("analytics")
        worker = ServiceChild(["worker"], free_port(), env, data / "worker.log")
        public = ServiceChild(face, port, env, data / "public.log")
        for child in (*children, worker, public):
            stack.callback(child.stop)
            child.start()
        yield Stack(public.url, API_KEY, [public, worker, *children])


@contextmanager
def stack_for(
    url: str | None,
    api_key: str | None,
    bootstrap: str | None,
    worker_concurrency: int,
    openai_url: str | None = None,
    whole: bool = False,
) -> Iterator[Stack]:
    """The stack at ``url`` as it is, or our own on the broker at ``bootstrap``."""
    if url:
        if not api_key:
            raise ValueError("--url needs --api-key")
        yield Stack(url.rstrip("/"), api_key)
        return
    assert bootstrap is not None, "our own stack needs the run's broker"
    with own_stack(bootstrap, worker_concurrency, openai_url, whole) as stack:
        yield stack
