"""What a job costs: USD per million input and output tokens, per model, from a price file.

The shipped file (``prices.json`` beside this module) holds OpenAI's list prices;
``TOKENRELAY_PRICES`` names another file of the same shape, which replaces it.
Cost is computed in decimal and rounded to 1e-9 USD (a nano-dollar), so that
sums over many jobs in ClickHouse (``Decimal(18, 9)``) are exact.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.jobs import JobRequest
from services.core.errors import ConfigError

log = logging.getLogger(__name__)

NANO = Decimal("1e-9")
PER_TOKENS = Decimal(1_000_000)
MEMO_MODELS = 1024
"""Model names whose price lookup a ``Prices`` remembers."""
CHARS_PER_TOKEN = 4
"""Prompt tokens are estimated at submission as characters / 4 (OpenAI's rule of thumb)."""
ESTIMATE_OUTPUT_TOKENS = 256
"""Output tokens assumed for an estimate when the job sets no ``max_tokens``."""


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Decimal = Field(ge=0, description="USD per million prompt tokens.")
    output: Decimal = Field(ge=0, description="USD per million completion tokens.")


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    models: dict[str, Price]


@dataclass(frozen=True)
class Prices:
    """Prices by model; a model's price is that of its longest listed prefix."""

    models: dict[str, Price]
    _found: dict[str, Price | None] = field(default_factory=dict, compare=False, repr=False)

    def price(self, model: str) -> Price | None:
        if model in self._found:
            return self._found[model]
        best = None
        for name in self.models:
            if model.startswith(name) and (best is None or len(name) > len(best)):
                best = name
        found = self.models[best] if best is not None else None
        if len(self._found) < MEMO_MODELS:  # model names come from clients: bounded
            self._found[model] = found
        return found

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """USD for this usage, rounded to 1e-9; 0 for a model without a price."""
        price = self.price(model)
        if price is None:
            return Decimal(0)
        usd = (prompt_tokens * price.input + completion_tokens * price.output) / PER_TOKENS
        return usd.quantize(NANO, rounding=ROUND_HALF_EVEN)

    def cost_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """``cost`` as the float an event carries; ``Decimal(repr(x))`` gives the decimal back."""
        return float(self.cost(model, prompt_tokens, completion_tokens))

    def estimate_usd(self, model: str, req: JobRequest, default_max_tokens: int) -> float:
        """An upper estimate before the job runs: the prompt's tokens, ``max_tokens`` out."""
        prompt = prompt_tokens(req)
        return self.cost_usd(model, prompt, req.max_tokens or default_max_tokens)


def prompt_tokens(req: JobRequest) -> int:
    """The prompt's tokens as estimated before a provider counts them: characters / 4,
    rounded up (admission, budgets and the rate limiter's reservations all use it)."""
    return math.ceil(sum(len(m.content) for m in req.chat_messages()) / CHARS_PER_TOKEN)


def load_prices(path: Path | None = None) -> Prices:
    """The price file at ``path``, or the shipped one; a ConfigError says what is wrong."""
    try:
        if path is None:
            raw = resources.files("services.core").joinpath("prices.json").read_bytes()
        else:
            raw = path.read_bytes()
        parsed = PriceFile.model_validate(orjson.loads(raw))
    except (OSError, orjson.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"cannot read the price file {path or 'prices.json'}: {exc}") from exc
    log.info("prices for %d models from %s", len(parsed.models), path or "the shipped file")
    return Prices(parsed.models)
