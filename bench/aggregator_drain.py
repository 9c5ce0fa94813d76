"""Aggregator throughput: how fast one instance drains a backlog of job events.

``python -m bench.aggregator_drain``: publishes a synthetic history (``JOBS``
jobs of ``TOKENS`` tokens each: queued, started, the tokens, completed) to a
fresh tokens topic, then starts one aggregator (``memory://``) and times, from
its ``/readyz`` 200, until its metrics say every event was applied. Compare
with the reducer alone over the same events in this process: the difference is
what Faust's consumer, streams and agent cost per event.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
from rich.console import Console

from bench.child import AggregatorChild
from bench.worker_scheduling import broker
from schemas.events import Completed, JobEvent, Queued, Started, Token, Usage, parse_event
from schemas.jobs import Priority
from services.aggregator.processor import JobStates, encode_state
from services.core.kafka import Producer
from services.core.serde import encode
from services.core.settings import Settings
from services.core.topics import ensure_topics
from services.localdev.kafka import free_port

console = Console()
JOBS, TOKENS = 1000, 100
W = {"worker_id": "bench", "tenant": "bench"}


def history(job_id: str) -> list[JobEvent]:
    step = 10_000
    events: list[JobEvent] = [
        Queued(
            job_id=job_id,
            attempt=0,
            seq=0,
            ts=1,
            priority=Priority.NORMAL,
            model="m",
            provider="fake",
            **W,
        ),
        Started(
            job_id=job_id,
            attempt=1,
            seq=0,
            ts=2,
            model="m",
            provider="fake",
            queue_wait_ms=1.0,
            **W,
        ),
    ]
    events += [
        Token(job_id=job_id, attempt=1, seq=i, ts=2 + i * step, text="x ", index=i, **W)
        for i in range(1, TOKENS + 1)
    ]
    events.append(
        Completed(
            job_id=job_id,
            attempt=1,
            seq=TOKENS + 1,
            ts=3 + TOKENS * step,
            content="x " * TOKENS,
            finish_reason="stop",
            usage=Usage(prompt_tokens=1, completion_tokens=TOKENS),
            cost_usd=0.0,
            ttft_ms=1.0,
            duration_ms=1.0,
            tokens_per_s=1.0,
            tokens=TOKENS,
            **W,
        )
    )
    return events


def reducer_alone(raws: list[bytes]) -> float:
    """Events per second of parse + reduce + store decision, no Kafka, no Faust."""
    stored: dict[str, bytes] = {}
    states = JobStates(stored.get, 0.5)
    started = time.perf_counter()
    for offset, raw in enumerate(raws):
        outcome = states.apply(parse_event(raw), 0, offset)
        if outcome.store:
            stored[outcome.state.job_id] = encode_state(outcome.state)
    return len(raws) / (time.perf_counter() - started)


async def publish(settings: Settings, raws: list[tuple[str, bytes]]) -> None:
    await ensure_topics(settings)
    producer = Producer(settings.kafka_bootstrap)
    producer.start()
    pending = []
    for key, raw in raws:
        pending.append(producer.send(settings.topics.tokens, key, raw))
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await producer.close()


def applied(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tokenrelay_aggregator_events_total{")
    )


def main() -> None:
    keyed = [(f"job-{j:06d}", encode(ev)) for j in range(JOBS) for ev in history(f"job-{j:06d}")]
    total = len(keyed)
    alone = reducer_alone([raw for _, raw in keyed])
    with broker(Settings()) as bootstrap, tempfile.TemporaryDirectory() as data:
        port = free_port()
        settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            state_store="memory://",
            aggregator_port=port,
            aggregator_url=f"http://127.0.0.1:{port}",
        )
        with console.status(f"publishing {total} events …"):
            asyncio.run(publish(settings, keyed))
        with AggregatorChild(settings, Path(data), Path(data) / "aggregator.log") as child:
            child.start()
            child.wait_ready()
            started = time.perf_counter()
            with console.status("draining …") as status:
                while (done := applied(child.url)) < total:
                    status.update(f"draining … {done:.0f}/{total}")
                    if time.perf_counter() - started > 600:
                        raise TimeoutError(f"only {done:.0f} of {total} events in 600 s")
                    time.sleep(0.2)
            seconds = time.perf_counter() - started
    rate = total / seconds
    console.print(
        f"aggregator drained {total} events ({JOBS} jobs x {TOKENS} tokens) in {seconds:.1f} s: "
        f"{rate:,.0f} events/s; reducer alone {alone:,.0f} events/s"
    )
    print(
        orjson.dumps(
            {
                "bench": "aggregator_drain",
                "events": total,
                "seconds": round(seconds, 2),
                "events_per_s": round(rate),
                "reducer_alone_per_s": round(alone),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
