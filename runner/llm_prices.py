"""What LLM tokens cost, for the decisions a provider does not price itself.

OpenRouter reports each answer's cost (`usage.cost`); OpenAI does not. The table is data
kept with the code (runner/data/llm_prices.toml: USD per million tokens of input, cached
input and output, with its source and date) and TICKRUN_LLM_PRICES overrides or extends
it per model. A model without a price costs None, shown as unknown: a guess would make a
run's spend look known when it is not.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

PER_MILLION = Decimal(1_000_000)
# The decisions table keeps NUMERIC(18, 8): a cost is rounded there once, here, so both
# stores give back the value the runner computed.
COST_QUANTUM = Decimal("0.00000001")
# A snapshot's date suffix: gpt-4.1-mini-2025-04-14, gpt-4-0613. Only a date is stripped,
# so gpt-4.1-mini is never priced as gpt-4.1.
_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_PREFIX = "openai/"

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                             strip_whitespace=True, to_lower=True)]


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0, description="Prompt tokens")
    cached_input: Decimal | None = Field(
        default=None, ge=0,
        description="Prompt tokens served from the provider's cache; unset: the input price")
    output: Decimal = Field(ge=0, description="Completion tokens, reasoning included")

    def cost(self, tokens_in: int, tokens_cached: int, tokens_out: int) -> Decimal:
        """Exact (round the sum, not each answer). Cached tokens are part of the prompt
        tokens, billed at the cached price."""
        cached = max(0, min(tokens_cached, tokens_in))
        cached_price = self.input if self.cached_input is None else self.cached_input
        return ((tokens_in - cached) * self.input + cached * cached_price
                + tokens_out * self.output) / PER_MILLION


PriceOverrides = dict[ModelName, ModelPrice]
_TABLE = TypeAdapter(PriceOverrides)


def quantize_cost(value: Decimal) -> Decimal:
    return value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, ModelPrice]

    @classmethod
    def load(cls, overrides: Mapping[str, ModelPrice] | None = None) -> PriceTable:
        """The bundled table with `overrides` (TICKRUN_LLM_PRICES) on top."""
        merged = dict(bundled_prices())
        merged.update({name.strip().lower(): price for name, price in (overrides or {}).items()})
        return cls(merged)

    def price(self, model: str) -> ModelPrice | None:
        for name in _candidates(model):
            if (found := self.prices.get(name)) is not None:
                return found
        return None

    def cost(self, model: str, tokens_in: int, tokens_cached: int,
             tokens_out: int) -> Decimal | None:
        price = self.price(model)
        return None if price is None else price.cost(tokens_in, tokens_cached, tokens_out)


def _candidates(model: str) -> Iterator[str]:
    """As given, without the `openai/` prefix OpenRouter uses, then undated: an exact
    entry (an override, a snapshot with its own price) wins over a family's."""
    name = model.strip().lower()
    names = [name] + ([name.removeprefix(_PREFIX)] if name.startswith(_PREFIX) else [])
    yield from names
    for n in names:
        undated = _DATED.sub("", n)
        if undated != n:
            yield undated


@functools.cache
def bundled_prices() -> dict[str, ModelPrice]:
    text = (resources.files("runner") / "data" / "llm_prices.toml").read_text("utf-8")
    return _TABLE.validate_python(tomllib.loads(text).get("models", {}))
