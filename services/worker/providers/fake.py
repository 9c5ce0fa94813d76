"""The ``fake`` provider: deterministic text for a prompt, paced, free, and able to fail on cue.

It makes the same events as a real provider: ``max_tokens`` tokens (default
64) chosen by a generator seeded with the prompt, at ``tokens_per_s``; its
usage counts what it sent. ``provider_options`` may set ``tokens_per_s``
(0: unpaced), ``fail_with`` (an error kind) and ``fail_after`` (a token count).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

from pydantic import ValidationError

from schemas.commands import JobCommand
from schemas.events import ErrorKind, Usage
from schemas.jobs import FAKE_DEFAULT_MAX_TOKENS, FakeProviderOptions
from services.worker.providers.base import Chunk, ProviderError

DEFAULT_MAX_TOKENS = FAKE_DEFAULT_MAX_TOKENS
_WORDS = (
    "the",
    "kafka",
    "log",
    "keeps",
    "every",
    "token",
    "of",
    "every",
    "job",
    "in",
    "order",
    "so",
    "a",
    "client",
    "can",
    "resume",
    "replay",
    "and",
    "watch",
    "it",
    "live",
    "while",
    "workers",
    "stream",
    "the",
    "model",
    "output",
    "and",
    "the",
    "stream",
    "processor",
    "keeps",
    "state",
    "durable",
    "fast",
    "observable",
    "pleasant",
    "to",
    "operate",
    "with",
    "clear",
    "metrics",
    "cost",
    "latency",
    "throughput",
    "partitions",
    "offsets",
    "consumers",
    "producers",
    "brokers",
)


def prompt_text(command: JobCommand) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in command.request.chat_messages())


def fake_tokens(prompt: str, count: int) -> list[str]:
    """The deterministic completion of ``prompt``: ``count`` tokens, each a word with its space."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)  # noqa: S311 - determinism, not secrecy
    return [(" " if i else "") + rng.choice(_WORDS) for i in range(count)]


def count_prompt_tokens(prompt: str) -> int:
    return len(prompt.split())


class FakeProvider:
    name = "fake"

    def __init__(self, tokens_per_s: float) -> None:
        self.tokens_per_s = tokens_per_s

    async def stream(self, command: JobCommand) -> AsyncIterator[Chunk]:
        try:
            opts = FakeProviderOptions.model_validate(command.request.provider_options)
        except ValidationError as exc:
            raise ProviderError(ErrorKind.INVALID_REQUEST, f"provider_options: {exc}") from exc
        rate = self.tokens_per_s if opts.tokens_per_s is None else opts.tokens_per_s
        prompt = prompt_text(command)
        tokens = fake_tokens(prompt, command.request.max_tokens or DEFAULT_MAX_TOKENS)
        failing = opts.fail_with is not None and (
            opts.fail_attempts is None or command.attempt <= opts.fail_attempts
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, text in enumerate(tokens):
            if failing and opts.fail_with is not None and i >= opts.fail_after:
                raise ProviderError(ErrorKind(opts.fail_with), f"fake failure after {i} tokens")
            if rate > 0:
                delay = t0 + (i + 1) / rate - loop.time()
                await asyncio.sleep(max(0.0, delay))
            elif i % 64 == 63:
                await asyncio.sleep(0)
            yield Chunk(text=text)
        if failing and opts.fail_with is not None:
            raise ProviderError(
                ErrorKind(opts.fail_with), f"fake failure after {len(tokens)} tokens"
            )
        usage = Usage(prompt_tokens=count_prompt_tokens(prompt), completion_tokens=len(tokens))
        yield Chunk(finish_reason="length" if command.request.max_tokens else "stop", usage=usage)

    async def close(self) -> None:
        return None
