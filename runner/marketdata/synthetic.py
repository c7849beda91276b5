"""Seeded, deterministic synthetic bars (geometric Brownian motion).

The same (seed, symbol, date) always gives the same bars, on any machine, so tests and
benchmarks are repeatable and two runs of one spec can be compared trade for trade.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import numpy as np

from core.bars import Bar
from runner.marketdata.base import MarketData, Timeline

CENT = Decimal("0.01")


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


class SyntheticMarketData(MarketData):
    def __init__(self, seed: int = 0, *, annual_vol: float = 0.35,
                 annual_drift: float = 0.05) -> None:
        self.seed = seed
        self.annual_vol = annual_vol
        self.annual_drift = annual_drift

    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        n = len(timeline)
        per_year = timeline.periods_per_year
        rng = _rng(self.seed, symbol, timeline.interval, timeline.times[0].isoformat())
        start = 20 + 480 * rng.random()
        sigma = self.annual_vol / np.sqrt(per_year)
        mu = self.annual_drift / per_year - sigma**2 / 2
        closes = start * np.exp(np.cumsum(mu + sigma * rng.standard_normal(n)))
        opens = np.concatenate(([start], closes[:-1])) * np.exp(
            0.2 * sigma * rng.standard_normal(n))
        wick = np.abs(sigma * rng.standard_normal((2, n)))
        highs = np.maximum(opens, closes) * (1 + wick[0])
        lows = np.minimum(opens, closes) * (1 - wick[1])
        volumes = rng.integers(1_000, 50_000, n) * (390 if per_year == 252 else 1)
        return [
            Bar(t, _px(o), _px(h), _px(lo), _px(c), Decimal(int(v)))
            for t, o, h, lo, c, v in zip(timeline.times, opens, highs, lows, closes, volumes,
                                         strict=True)
        ]


def _px(value: float) -> Decimal:
    return Decimal(repr(round(float(value), 2))).quantize(CENT)
