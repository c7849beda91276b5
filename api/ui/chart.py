"""What a run's charts draw: its bars, its fills, its resting orders' lives, its
equity and buy-and-hold's.

The bars are the very ones the runner played: the same timeline and the same source
(synthetic bars from the spec's seed; the bar cache or the prices table otherwise; a
page never asks a provider for bars). Buy-and-hold is the runner's benchmark curve
(runner/result.py: the cash split evenly, bought at the first fill price, held over the
closes played), the equity the one each decision recorded, the fills and the orders the
ledger's (a resting order lives from the bar it was decided on to the bar it filled,
was cancelled or expired on; an open one to the last bar drawn). The browser only
draws these numbers.

This is the console's one import of runner code (its market data and prices), allowed
by the import-linter contract that keeps the rest of api off runner.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from core import performance
from core.bars import Bar
from core.records import (
    Decision,
    OrderEvent,
    OrderEventKind,
    OrderRecord,
    OrderState,
    Run,
    Trade,
    TradeStatus,
)
from core.spec import DataSource
from core.store import Store
from runner.marketdata.base import MarketData, timeline_for
from runner.prices import RunPrices

log = logging.getLogger(__name__)
LIMIT = 5000  # the most a /v1 page of orders or their events holds
BUYS = {"buy", "cover"}
ENDS = {OrderEventKind.FILLED, OrderEventKind.CANCELLED, OrderEventKind.EXPIRED}


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


def _buy_and_hold(run: Run, prices: RunPrices, steps: int) -> list[Decimal]:
    """The runner's benchmark curve (runner.result.buy_and_hold_curve), from the bars."""
    if steps == 0:
        return []
    closes = {s: [b.close for b in bars[:steps]] for s, bars in prices.bars.items()}
    return performance.split_buy_and_hold_curve(run.spec.initial_cash, prices.fill_prices(0),
                                                closes, run.spec.fee_per_trade)


def _bar(b: Bar) -> dict[str, Any]:
    return {"time": int(b.time.timestamp()), "open": float(b.open), "high": float(b.high),
            "low": float(b.low), "close": float(b.close)}


def _fill(trade: Trade) -> dict[str, Any]:
    assert trade.filled_at is not None
    return {"time": int(trade.filled_at.timestamp()), "side": trade.side.value,
            "quantity": str(trade.quantity), "price": float(trade.price), "id": trade.id,
            "buy": trade.side.value in BUYS}


def order_lives(orders: list[OrderRecord], events: list[OrderEvent],
                last: dt.datetime | None) -> list[dict[str, Any]]:
    """Each resting order that rested (not refused), at its limit (else stop) price."""
    ended = {e.order_id: e.bar_time for e in events if e.kind in ENDS and e.bar_time}
    lives = []
    for o in orders:
        price = o.limit_price if o.limit_price is not None else o.stop_price
        if not o.type.rests or o.state is OrderState.REFUSED or price is None:
            continue
        end = o.filled_at or ended.get(o.id) or (last if o.state is OrderState.OPEN else None)
        start = int(o.bar_time.timestamp())
        lives.append({"id": o.id, "symbol": o.symbol, "side": o.side.value,
                      "type": o.type.value, "state": o.state.value, "price": float(price),
                      "from": start, "to": max(start, int((end or o.bar_time).timestamp()))})
    return lives


def chart_data(run: Run, store: Store, decisions: list[Decision],
               trades: list[Trade]) -> dict[str, Any]:
    """Everything the run page draws, as JSON: per symbol its bars played (and the bar
    the last decision fills on), its fills and its resting orders' lives; equity and
    buy-and-hold per close."""
    prices = run_prices(run, store)
    steps = min(run.steps_done, len(prices) if prices else 0)
    shown = min(len(prices), steps + 1) if prices and steps else 0
    last = prices.timeline.times[shown - 1] if prices and shown else None
    fills = [t for t in trades if t.status is TradeStatus.FILLED and t.filled_at]
    lives = order_lives(store.list_orders(run.id, limit=LIMIT),
                        store.list_order_events(run.id, limit=LIMIT), last)
    symbols = {symbol: {
        "bars": [_bar(b) for b in prices.bars[symbol][:shown]] if prices else [],
        "fills": [_fill(t) for t in fills if t.symbol == symbol],
        "orders": [life for life in lives if life["symbol"] == symbol],
    } for symbol in run.spec.symbols}
    bench = _buy_and_hold(run, prices, steps) if prices else []
    times = prices.timeline.times[:steps] if prices else []
    return {
        "run_id": run.id, "steps": steps, "bars_available": prices is not None,
        "symbols": symbols,
        "equity": [{"time": int(d.bar_time.timestamp()), "value": float(d.equity)}
                   for d in decisions if d.equity is not None],
        "benchmark": [{"time": int(t.timestamp()), "value": float(v)}
                      for t, v in zip(times, bench, strict=True)],
    }


def equity_curves(store: Store, runs: list[tuple[int, str]], *, most: int = 40
                  ) -> list[dict[str, Any]]:
    """A batch's equity curves: each run's equity as its decisions recorded it, for the
    first `most` of the (run id, player) pairs given (best ranked first)."""
    curves = []
    for run_id, player in runs[:most]:
        points = [{"time": int(d.bar_time.timestamp()), "value": float(d.equity)}
                  for d in store.list_decisions(run_id, limit=LIMIT) if d.equity is not None]
        curves.append({"run_id": run_id, "player": player, "points": points})
    return curves
