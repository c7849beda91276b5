"""Bars of a provider (polygon, alpaca) through the bar cache in the store.

The first run of a session fetches what the cache lacks (and says so through
`on_fetch`, so a long backtest on a free tier is visibly fetching, not stuck); every
later run of it reads the very same bars from the store.
"""

from __future__ import annotations

from core.bars import Bar
from core.marketdata.cache import BarCache, Progress
from core.marketdata.providers import Interval
from runner.marketdata.base import MarketData, Timeline, align, stored


class CachedMarketData(MarketData):
    def __init__(self, cache: BarCache, on_fetch: Progress | None = None) -> None:
        self.cache = cache
        self.on_fetch = on_fetch

    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        interval = Interval(timeline.interval)
        days = timeline.days
        self.cache.fill(symbol, interval, days, on_progress=self.on_fetch)
        return align(symbol, timeline, stored(self.cache.load(symbol, interval, days)))
