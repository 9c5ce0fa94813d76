"""What happens after an attempt fails: retry later, or fail for good. Pure; no Kafka here."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    RETRY = "retry"
    """Run again as attempt + 1 after ``delay_s``."""
    FAIL = "fail"
    """Not retryable (``auth``, ``invalid_request``): fail at once."""
    EXHAUSTED = "exhausted"
    """Retryable, but this was the last attempt: fail and dead-letter the command."""


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    delay_s: float = 0.0


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base·2^(attempt-1))]."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)


def decide(
    *,
    retryable: bool,
    attempt: int,
    max_attempts: int,
    retry_after_s: float | None,
    base_s: float,
    max_s: float,
    rng: random.Random | None = None,
) -> Decision:
    """Retry with backoff, never sooner than the provider's ``Retry-After``."""
    if not retryable:
        return Decision(Outcome.FAIL)
    if attempt >= max_attempts:
        return Decision(Outcome.EXHAUSTED)
    delay = backoff_s(attempt, base_s, max_s, rng)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return Decision(Outcome.RETRY, delay)
