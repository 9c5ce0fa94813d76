"""The newest dead letters, read from the end of ``tokenrelay.jobs.dlq``.

Each partition is read from ``limit`` records before its end up to the end
taken when the read began (a bounded read, however long the topic is); the
letters of all partitions are merged newest first. An undecodable letter is
shown as its text rather than hidden: it is what an operator came to see.
"""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.dead_letter import DeadLetter
from services.core.errors import DecodeError
from services.core.job_log import reader
from services.core.kafka import KafkaClients, Record
from services.core.serde import decode

READ_TIMEOUT_S = 5.0


def entry_of(rec: Record) -> dict[str, Any]:
    """One dead letter as ``GET /v1/admin/dead-letters`` shows it."""
    base = {"partition": rec.partition, "offset": rec.offset}
    job_id = rec.key.decode(errors="replace") if rec.key else None
    try:
        letter = decode(DeadLetter, rec.value)
    except DecodeError as exc:
        raw = (rec.value or b"").decode(errors="replace")
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
        "raw": letter.raw,
    }


def newest(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (e["ts"], e["offset"]), reverse=True)[:limit]


async def read_newest(
    clients: KafkaClients, topic: str, partitions: int, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` newest dead letters of ``topic``, newest first."""
    async with reader(clients, "dead-letters") as consumer:
        ends: dict[int, int] = {}
        starts = []
        for p in range(partitions):
            low, high = await consumer.watermarks(topic, p)
            if high > low:
                ends[p] = high
                starts.append((topic, p, max(low, high - limit)))
        if not starts:
            return []
        await consumer.assign(starts)
        entries: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READ_TIMEOUT_S
        pending = set(ends)
        while pending and loop.time() < give_up:
            for rec in await consumer.poll(500, 0.2):
                if rec.offset < ends[rec.partition]:
                    entries.append(entry_of(rec))
            pending = {p for p in pending if await consumer.position(topic, p) < ends[p]}
        return newest(entries, limit)
