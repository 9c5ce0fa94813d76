"""A downstream app of tokenrelay's topics: a webhook for each finished job, once per job.

It reads ``tokenrelay.lifecycle`` (every event but the tokens, so its work does
not grow with a job's length) with confluent-kafka, ``read_committed``, and for
each terminal event (``completed``, ``failed``, ``cancelled``) POSTs
``{"job_id", "attempt", "status", ...}`` to the webhook URL.

Once per job across its own restarts: it keeps its offsets in its own SQLite
file, in the same transaction as the ``(job_id, attempt)`` pairs it delivered,
and seeks to them when partitions are assigned (Kafka's committed offsets are
not used). A restart therefore neither skips nor repeats a delivery it
recorded. The one gap no subscriber can close alone is a crash after the POST
and before its record: then the POST is sent again, with the same
``Idempotency-Key`` (``<job_id>:<attempt>``), so the receiver can drop it.

    python examples/subscriber.py --bootstrap 127.0.0.1:9092 --webhook http://127.0.0.1:9000/hook
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger("subscriber")
TERMINAL = {"completed": "succeeded", "failed": "failed", "cancelled": "cancelled"}


class Ledger:
    """Offsets and deliveries, committed together."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS offsets (topic TEXT, part INTEGER, next INTEGER,"
            " PRIMARY KEY (topic, part));"
            "CREATE TABLE IF NOT EXISTS delivered (job_id TEXT, attempt INTEGER,"
            " PRIMARY KEY (job_id, attempt));"
        )

    def next_offset(self, topic: str, part: int) -> int | None:
        row = self.db.execute(
            "SELECT next FROM offsets WHERE topic = ? AND part = ?", (topic, part)
        ).fetchone()
        return None if row is None else int(row[0])

    def delivered(self, job_id: str, attempt: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM delivered WHERE job_id = ? AND attempt = ?", (job_id, attempt)
        ).fetchone()
        return row is not None

    def record(self, topic: str, part: int, next_offset: int, job: tuple[str, int] | None) -> None:
        with self.db:  # one transaction
            if job is not None:
                self.db.execute("INSERT OR IGNORE INTO delivered VALUES (?, ?)", job)
            self.db.execute(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)", (topic, part, next_offset)
            )


def notification(event: dict[str, Any]) -> dict[str, Any]:
    """The webhook's body for a terminal event."""
    body = {
        "job_id": event["job_id"],
        "attempt": event["attempt"],
        "tenant": event["tenant"],
        "status": TERMINAL[event["type"]],
        "finished_at": event["ts"],
    }
    if event["type"] == "completed":
        body |= {"usage": event["usage"], "cost_usd": event["cost_usd"]}
    else:
        body["error"] = event.get("message") or event.get("reason")
    return body


def post(url: str, body: dict[str, Any], key: str, timeout: float = 10.0) -> None:
    request = urllib.request.Request(  # noqa: S310 - the operator's own webhook URL
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
        if resp.status >= 300:
            raise RuntimeError(f"the webhook answered {resp.status}")


def run(bootstrap: str, topic: str, group: str, webhook: str, ledger: Ledger) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def assigned(consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            kept = ledger.next_offset(tp.topic, tp.partition)
            tp.offset = OFFSET_BEGINNING if kept is None else kept
        consumer.assign(parts)
        log.info("assigned %s", [(tp.partition, tp.offset) for tp in parts])

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",  # never an aborted attempt's events
            "enable.auto.commit": False,  # the ledger holds the offsets
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic], on_assign=assigned)
    try:
        while not stopping:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            job = None
            event = json.loads(msg.value()) if msg.value() else None
            if event is not None and event.get("type") in TERMINAL:
                job = (event["job_id"], int(event["attempt"]))
                if not ledger.delivered(*job):
                    post(webhook, notification(event), f"{job[0]}:{job[1]}")
                    log.info("job %s attempt %d: webhook sent", *job)
            ledger.record(msg.topic(), msg.partition(), msg.offset() + 1, job)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="tokenrelay.lifecycle")
    parser.add_argument("--group", default="webhook-subscriber")
    parser.add_argument("--webhook", required=True)
    parser.add_argument("--ledger", type=Path, default=Path("subscriber.sqlite"))
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(opts.bootstrap, opts.topic, opts.group, opts.webhook, Ledger(opts.ledger))


if __name__ == "__main__":
    main()
