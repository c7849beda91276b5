"""What a run's charts draw: its bars, its fills, its equity and buy-and-hold's.

The bars are the very ones the runner played: the same timeline and the same source
(synthetic bars from the spec's seed; the bar cache or the prices table otherwise; a
page never asks a provider for bars). Buy-and-hold is the runner's benchmark curve
(runner/result.py: the cash split evenly, bought at the first fill price, held over the
closes played), the equity the one each decision recorded, the fills the ledger's. The
browser only draws these numbers.

This is the console's one import of runner code (its market data and prices), allowed
by the import-linter contract that keeps the rest of api off runner.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from core import performance
from core.bars import Bar
from core.records import Decision, Run, Trade, TradeStatus
from core.spec import DataSource
from core.store import Store
from runner.marketdata.base import MarketData, timeline_for
from runner.prices import RunPrices

log = logging.getLogger(__name__)
BUYS = {"buy", "cover"}


def _market_data(run: Run, store: Store) -> MarketData | None:
    """The run's bars' source, without a provider: a page reads, it never fetches."""
    data = run.spec.data
    if data is None or data is DataSource.SYNTHETIC:
        from runner.marketdata.synthetic import SyntheticMarketData

        return SyntheticMarketData(run.spec.bars_seed)
    if data is DataSource.TABLE:
        from runner.marketdata.table import TableMarketData

        return TableMarketData(store)
    if data in (DataSource.POLYGON, DataSource.ALPACA):
        from core.marketdata.cache import BarCache
        from runner.marketdata.cached import CachedMarketData

        return CachedMarketData(BarCache(store, data.value, None))
    return None  # files: only the runner's volume has them


def run_prices(run: Run, store: Store) -> RunPrices | None:
    """The run's bars on its timeline, or None when the API cannot read them."""
    source = _market_data(run, store)
    if source is None:
        return None
    try:
        timeline = timeline_for(run.spec)
        bars = {s: source.bars(s, timeline) for s in run.spec.symbols}
    except Exception as exc:  # no bars cached yet, a symbol the table lacks...
        log.info("run %d: no bars to draw (%s)", run.id, exc)
        return None
    return RunPrices(timeline, bars, run.spec.fill)


def buy_and_hold(run: Run, prices: RunPrices, steps: int) -> list[Decimal]:
    """The benchmark's value at each close played (runner.result.buy_and_hold's curve)."""
    if steps == 0:
        return []
    spec = run.spec
    per_symbol = spec.initial_cash / len(spec.symbols)
    entry = prices.fill_prices(0)
    curves = [performance.buy_and_hold_curve(per_symbol, entry[symbol],
                                             [b.close for b in bars[:steps]],
                                             spec.fee_per_trade)
              for symbol, bars in prices.bars.items()]
    return [sum(values, Decimal(0)) for values in zip(*curves, strict=True)]


def _seconds(bar: Bar) -> int:
    return int(bar.time.timestamp())


def _fill(trade: Trade) -> dict[str, Any]:
    assert trade.filled_at is not None
    return {"time": int(trade.filled_at.timestamp()), "side": trade.side.value,
            "quantity": str(trade.quantity), "price": float(trade.price), "id": trade.id,
            "buy": trade.side.value in BUYS}


def chart_data(run: Run, store: Store, decisions: list[Decision],
               trades: list[Trade]) -> dict[str, Any]:
    """Everything the run page draws, as JSON: per symbol its bars played (and the bar
    the last decision fills on) and its fills; equity and buy-and-hold per close."""
    prices = run_prices(run, store)
    fills = [t for t in trades if t.status is TradeStatus.FILLED and t.filled_at]
    steps = min(run.steps_done, len(prices) if prices else 0)
    symbols: dict[str, Any] = {}
    for symbol in run.spec.symbols:
        shown = min(len(prices), steps + 1) if prices and steps else 0
        series = prices.bars[symbol][:shown] if prices else []
        symbols[symbol] = {
            "bars": [{"time": _seconds(b), "open": float(b.open), "high": float(b.high),
                      "low": float(b.low), "close": float(b.close)} for b in series],
            "fills": [_fill(t) for t in fills if t.symbol == symbol]}
    bench = buy_and_hold(run, prices, steps) if prices else []
    times = prices.timeline.times[:steps] if prices else []
    return {
        "run_id": run.id, "steps": steps, "bars_available": prices is not None,
        "symbols": symbols,
        "equity": [{"time": int(d.bar_time.timestamp()), "value": float(d.equity)}
                   for d in decisions if d.equity is not None],
        "benchmark": [{"time": int(t.timestamp()), "value": float(v)}
                      for t, v in zip(times, bench, strict=True)],
    }
