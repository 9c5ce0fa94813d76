"""What ``POST /v1/chat/completions`` streaming adds over the job's own events endpoint.

Starts ``tokenrelay up`` (``bench.scale_out.start_up``: its own broker), then runs
``--streams`` chat completions at once with the official ``openai`` SDK, each
paced by the fake provider at ``--tokens-per-s``; beside each, a watcher reads
the same job (its ``x-tokenrelay-job-id``) from ``/v1/jobs/{id}/events``. Both
note when each token arrived, so per token the difference is what the OpenAI
face adds; the events stream's own latency (arrival - the event's ``ts``) is
printed beside it.

    python -m bench.chat_latency
    python -m bench.chat_latency --streams 50 --tokens 200 --tokens-per-s 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.console import Console
from rich.table import Table

from bench.harness.report import summarize
from bench.scale_out import API_KEY, start_up, stop_up

console = Console(stderr=True)
MESSAGES: Any = [{"role": "user", "content": "tell me about kafka"}]


async def watch_events(
    http: httpx.AsyncClient, job_id: str, arrivals: list[float], lags_ms: list[float]
) -> None:
    """The job's token events from its events endpoint: arrival times and ts-to-arrival."""
    async with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token":
                now = time.time()
                arrivals.append(now)
                ts = int(line.split('"ts":', 1)[1].split(",", 1)[0].split("}", 1)[0])
                lags_ms.append(now * 1000 - ts / 1000)
            elif line.startswith("data: ") and event in ("completed", "failed", "cancelled"):
                return


async def one(
    client: openai.AsyncOpenAI, http: httpx.AsyncClient, tokens: int
) -> tuple[list[float], list[float], int]:
    """One chat stream and, beside it, a watcher of the same job's events: per token, what
    the chat stream arrived later (ms); the events' own latencies; tokens delivered."""
    chat_arrivals: list[float] = []
    event_arrivals: list[float] = []
    lags: list[float] = []
    async with client.chat.completions.with_streaming_response.create(
        model="fake-1", messages=MESSAGES, max_tokens=tokens, stream=True
    ) as response:
        job_id = response.headers["x-tokenrelay-job-id"]
        watcher = asyncio.create_task(watch_events(http, job_id, event_arrivals, lags))
        async for chunk in await response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                chat_arrivals.append(time.time())
        await watcher
    added = [(c - e) * 1000 for c, e in zip(chat_arrivals, event_arrivals, strict=False)]
    return added, lags, len(chat_arrivals)


async def measure(base: str, key: str, streams: int, tokens: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=streams * 2 + 10)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        openai.AsyncOpenAI(
            base_url=f"{base}/v1",
            api_key=key,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=120),
        ) as client,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=120, limits=limits) as http,
    ):
        started = time.monotonic()
        results = await asyncio.gather(*(one(client, http, tokens) for _ in range(streams)))
        seconds = time.monotonic() - started
    added = [a for r in results for a in r[0]]
    lags = [lag for r in results for lag in r[1]]
    delivered = sum(r[2] for r in results)
    return {
        "streams": streams,
        "tokens_delivered": delivered,
        "seconds": round(seconds, 1),
        "added_ms": summarize(added),
        "events_latency_ms": summarize(lags),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running stack (default: start one)")
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tr-chat-") as tmp:
        up = None
        base = opts.url
        if base is None:
            console.print("starting tokenrelay up …")
            os.environ["TOKENRELAY_FAKE_TOKENS_PER_S"] = str(opts.tokens_per_s)
            up, base = start_up(1, 1, Path(tmp))
        try:
            console.print(f"{opts.streams} chat streams x {opts.tokens} tokens …")
            result = asyncio.run(measure(base, opts.api_key, opts.streams, opts.tokens))
        finally:
            if up is not None:
                stop_up(up)
    table = Table(title="chat completions stream vs the job's events stream, per token (ms)")
    for col in ("measure", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    for name, key in (
        ("added by the OpenAI face", "added_ms"),
        ("events: ts → arrival", "events_latency_ms"),
    ):
        s = result[key] or {}
        table.add_row(
            name, *(f"{s.get(q, float('nan')):.1f}" for q in ("p50", "p90", "p99", "max"))
        )
    Console().print(table)
    r = result
    console.print(f"{r['tokens_delivered']} tokens, {r['streams']} streams, {r['seconds']} s")


if __name__ == "__main__":
    main()
