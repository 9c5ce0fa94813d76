"""The newest dead letters, read from the end of ``tokenrelay.jobs.dlq``.

Each partition is read from ``2 * limit`` offsets before its end up to the end
taken when the read began: its last stable offset, because workers write
letters in transactions and a ``read_committed`` reader never passes an open
one. A letter written alone in a transaction is followed by its commit marker,
which takes an offset too: twice the offsets hold ``limit`` letters. The whole
read has one deadline (``READ_TIMEOUT_S``, then
``KafkaUnavailableError``); the letters of all partitions are merged newest
first. An undecodable letter is shown as its text (the first ``RAW_SHOWN``
characters) rather than hidden: it is what an operator came to see.
"""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.dead_letter import DeadLetter
from services.core.errors import DecodeError, KafkaUnavailableError
from services.core.job_log import reader
from services.core.kafka import Admin, KafkaClients, Record
from services.core.serde import decode

READ_TIMEOUT_S = 5.0
RAW_SHOWN = 2000


def entry_of(rec: Record) -> dict[str, Any]:
    """One dead letter as ``GET /v1/admin/dead-letters`` shows it."""
    base = {"partition": rec.partition, "offset": rec.offset}
    job_id = rec.key.decode(errors="replace") if rec.key else None
    try:
        letter = decode(DeadLetter, rec.value)
    except DecodeError as exc:
        raw = (rec.value or b"")[: RAW_SHOWN * 4].decode(errors="replace")[:RAW_SHOWN]
        return base | {
            "job_id": job_id,
            "source": rec.where(),
            "error_kind": "unreadable_dead_letter",
            "error": str(exc),
            "ts": rec.timestamp_ms * 1000,
            "command": None,
            "raw": raw,
        }
    command = letter.command.model_dump(mode="json") if letter.command is not None else None
    return base | {
        "job_id": letter.command.job_id if letter.command is not None else job_id,
        "source": letter.source,
        "error_kind": letter.error_kind,
        "error": letter.error,
        "ts": letter.ts,
        "command": command,
        "raw": None if letter.raw is None else letter.raw[:RAW_SHOWN],
    }


def newest(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (e["ts"], e["offset"]), reverse=True)[:limit]


async def read_newest(
    clients: KafkaClients, admin: Admin, topic: str, partitions: int, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` newest dead letters of ``topic``, newest first."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            return newest(await _read(clients, admin, topic, partitions, limit), limit)
    except TimeoutError as exc:
        raise KafkaUnavailableError(f"{topic} was not read in {READ_TIMEOUT_S:.0f}s") from exc


async def _read(
    clients: KafkaClients, admin: Admin, topic: str, partitions: int, limit: int
) -> list[dict[str, Any]]:
    ends = {p: end for p, end in (await admin.end_offsets(topic, partitions)).items() if end > 0}
    if not ends:
        return []
    async with reader(clients, "dead-letters") as consumer:
        # An offset below the partition's first (retention) starts at its first (the reset).
        await consumer.assign([(topic, p, max(0, end - 2 * limit)) for p, end in ends.items()])
        entries: list[dict[str, Any]] = []
        pending = dict(ends)
        while pending:
            for rec in await consumer.poll(500, 0.2):
                if rec.offset < ends[rec.partition]:
                    entries.append(entry_of(rec))
            for p in list(pending):
                if await consumer.position(topic, p) >= pending[p]:
                    del pending[p]
        return entries
