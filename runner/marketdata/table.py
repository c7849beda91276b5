"""Bars from the `stock_prices` table of the store."""

from __future__ import annotations

from core.bars import Bar
from core.store import Store
from runner.marketdata.base import MarketData, Timeline, align, stored


class TableMarketData(MarketData):
    def __init__(self, store: Store) -> None:
        self.store = store

    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        rows = self.store.load_prices(symbol, timeline.interval, timeline.times[0],
                                      timeline.times[-1])
        return align(symbol, timeline, stored(rows))
