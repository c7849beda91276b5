"""An independent check of resting orders: the same limit-order strategy through tickrun
and through backtesting.py, on backtesting.py's own GOOG daily bars, gives the same fills.

The strategy, decided at each bar's close from the second bar on (backtesting.py's first
`next()`): when flat, a day order to buy 10 at 2% under the close (it lives one bar,
the next); when long, a GTC order to sell the 10 at 3% above the entry price. tickrun
plays it as a daily backtest of the session engine on a `files` data source (the bars
written to GOOG.1d.csv), backtesting.py with trade_on_close=False, no commission,
exclusive_orders off and a fixed size; the day order is cancelled there at the next
bar's decision, when tickrun's has expired. Limit prices are rounded to the cent, the
same way on both sides. Every fill, bar, side and price, must agree over the 2,148 bars.
"""

from __future__ import annotations

import datetime as dt
import warnings
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.eventlog import EventLog
from core.records import Order, OrderType, Side, TimeInForce
from core.spec import RunSpec
from core.store import Store
from runner.deciders import DecisionResult, StepContext
from runner.events import EventPublisher
from runner.marketdata import market_data_for, timeline_for
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import make_run, run_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SIZE = 10
CENT = Decimal("0.01")
Fill = tuple[int, str, Decimal]  # bar index, buy or sell, price


def goog() -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from backtesting.test import GOOG
    frame: pd.DataFrame = GOOG.copy()
    return frame


def entry_limit(close: Decimal) -> Decimal:
    return (close * Decimal("0.98")).quantize(CENT, ROUND_HALF_EVEN)


def exit_limit(entry: Decimal) -> Decimal:
    return (entry * Decimal("1.03")).quantize(CENT, ROUND_HALF_EVEN)


class LimitStrategy:
    """tickrun's side: buy the dip with a day limit order, sell the bounce with a GTC
    limit order."""

    name = "limit_strategy"
    blocking = False

    def decide(self, ctx: StepContext) -> DecisionResult:
        if ctx.step == 0 or ctx.open_orders:  # backtesting.py decides from bar 1 on
            return DecisionResult.hold("waiting")
        if ctx.portfolio.held("GOOG") == 0:
            order = Order(Side.BUY, "GOOG", Decimal(SIZE), OrderType.LIMIT,
                          limit_price=entry_limit(ctx.price("GOOG")),
                          time_in_force=TimeInForce.DAY)
        else:
            entry = ctx.recent_trades[-1]  # the buy that made the position
            assert entry.side is Side.BUY and entry.filled
            order = Order(Side.SELL, "GOOG", Decimal(SIZE), OrderType.LIMIT,
                          limit_price=exit_limit(entry.price), time_in_force=TimeInForce.GTC)
        return DecisionResult(action=order.side.value, orders=[order], outcome="trade")


def tickrun_fills(store: Store, event_log: EventLog, data_dir: Path,
                  frame: pd.DataFrame) -> list[Fill]:
    frame.rename(columns=str.lower).rename_axis("time").to_csv(data_dir / "GOOG.1d.csv")
    spec = RunSpec(mode="daily", symbols=["GOOG"], start=frame.index[0].date(),  # type: ignore[arg-type]
                   end=frame.index[-1].date(), data="files",  # type: ignore[arg-type]
                   initial_cash=Decimal(100_000))
    run = run_status(store).start_attempt(make_run(store, spec).id)
    timeline = timeline_for(run.spec)
    bars = market_data_for(run.spec, store, str(data_dir)).bars("GOOG", timeline)
    assert [b.time.date() for b in bars] == [t.date() for t in frame.index]
    assert not any(b.filled for b in bars)  # every bar is GOOG's own
    session = Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                      model=store.get_model(run.model_id), decider=LimitStrategy(),
                      timeline=timeline, bars={"GOOG": bars}, stop=StopSignal(),
                      settings=RunnerSettings(recent_trades=2))
    assert session.play() is Ending.COMPLETED
    index = {t: i for i, t in enumerate(timeline.times)}
    trades = list(store.iter_trades(run.id))
    assert all(t.filled for t in trades)
    return [(index[t.filled_at], t.side.value, t.price)  # type: ignore[index]
            for t in trades]


def backtesting_fills(frame: pd.DataFrame) -> list[Fill]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from backtesting import Backtest, Strategy

    seen: dict[str, Any] = {}

    class Limits(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            for order in list(self.orders):
                if order.is_long:  # yesterday's day order: it lived its one bar
                    order.cancel()
            if not self.position:
                close = Decimal(str(self.data.Close[-1]))
                self.buy(size=SIZE, limit=float(entry_limit(close)))
            elif not self.orders:
                entry = Decimal(str(self.trades[-1].entry_price))
                self.sell(size=SIZE, limit=float(exit_limit(entry)))
            seen["trades"] = (*self.closed_trades, *self.trades)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Backtest(frame, Limits, cash=100_000, commission=0, trade_on_close=False,
                 exclusive_orders=False, hedging=False, finalize_trades=False).run()
    fills: list[Fill] = []
    for trade in seen["trades"]:
        fills.append((trade.entry_bar, "buy", Decimal(str(trade.entry_price))))
        if trade.exit_bar is not None:
            fills.append((trade.exit_bar, "sell", Decimal(str(trade.exit_price))))
    return sorted(fills)


def test_a_limit_order_strategy_fills_as_in_backtesting_py(
        store: Store, event_log: EventLog, tmp_path: Path) -> None:
    frame = goog()
    ours = tickrun_fills(store, event_log, tmp_path, frame)
    theirs = backtesting_fills(frame)
    assert len(ours) > 50  # a strategy that trades, or the check says little
    assert ours == theirs
    # Both rules were used: fills at the limit, and at a better open.
    opens = {i: Decimal(str(o)) for i, o in enumerate(frame["Open"])}
    assert any(price == opens[bar] for bar, _, price in ours)
    assert any(price != opens[bar] for bar, _, price in ours)
    assert dt.date(2004, 8, 19) == frame.index[0].date()
