"""What a model call costs: USD per million tokens, by model.

Defaults are Anthropic's list prices; `model.prices` in the config overrides or adds models.
An unknown model is priced like the most expensive known one, so a budget errs on the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.model import Usage


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    cache_read: float | None = None  # default: 10% of input
    cache_write: float | None = None  # default: 125% of input


# What `agent.scripted_model.ScriptedModel` answers as: no model is called, so nothing is spent.
SCRIPTED = "scripted"

DEFAULT_PRICES: dict[str, Price] = {
    SCRIPTED: Price(0.0, 0.0, 0.0, 0.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-opus-4-7": Price(5.0, 25.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
}


def price_of(model: str, overrides: Mapping[str, Price] | None = None) -> Price:
    prices = {**DEFAULT_PRICES, **(overrides or {})}
    if model in prices:
        return prices[model]
    # Dated snapshots ("claude-haiku-4-5-20251001") cost what their alias costs.
    for name in sorted(prices, key=len, reverse=True):
        if model.startswith(name):
            return prices[name]
    return max(prices.values(), key=lambda price: price.output)


def cost_usd(model: str, usage: Usage, overrides: Mapping[str, Price] | None = None) -> float:
    price = price_of(model, overrides)
    cache_read = price.cache_read if price.cache_read is not None else price.input * 0.1
    cache_write = price.cache_write if price.cache_write is not None else price.input * 1.25
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * cache_read
        + usage.cache_creation_tokens * cache_write
    )
    return round(total / 1_000_000, 8)
