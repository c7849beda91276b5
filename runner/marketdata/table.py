"""Bars from the `stock_prices` table of the store."""

from __future__ import annotations

from core.store import Store
from runner.marketdata.base import Bar, MarketData, Timeline, align


class TableMarketData(MarketData):
    def __init__(self, store: Store) -> None:
        self.store = store

    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        rows = self.store.load_prices(symbol, timeline.interval, timeline.times[0],
                                      timeline.times[-1])
        found = {r.bar_time: Bar(r.bar_time, r.open, r.high, r.low, r.close, r.volume)
                 for r in rows}
        return align(symbol, timeline, found)
