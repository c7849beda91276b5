"""Result metrics: drawdown, Sharpe annualized by interval, win rate."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from decimal import Decimal

from core import performance
from core.records import Side, Trade, TradeStatus

T0 = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)


def trade(side: Side, qty: str, price: str, status: TradeStatus = TradeStatus.FILLED) -> Trade:
    filled_at = T0 if status is TradeStatus.FILLED else None
    return Trade(id=0, run_id=1, step=0, seq=0, bar_time=T0, filled_at=filled_at, side=side,
                 symbol="X", quantity=Decimal(qty), price=Decimal(price), fees=Decimal(0),
                 status=status, reason=None, cash_after=Decimal(0), reasoning=None,
                 created_at=T0)


def test_max_drawdown_is_the_worst_peak_to_trough() -> None:
    assert math.isclose(performance.max_drawdown([100, 120, 90, 130, 117]), 0.25)
    assert performance.max_drawdown([100, 101, 102]) == 0


def test_sharpe_scales_with_the_square_root_of_periods() -> None:
    curve = [100.0, 101.0, 100.5, 102.0, 101.0, 103.0]
    daily = performance.sharpe(curve, 252)
    minute = performance.sharpe(curve, 252 * 390)
    assert daily is not None and minute is not None
    assert math.isclose(minute / daily, math.sqrt(390))
    assert performance.sharpe([100.0, 100.0, 100.0], 252) is None


def test_win_rate_counts_closing_sells_against_average_cost() -> None:
    trades = [trade(Side.BUY, "10", "10"), trade(Side.SELL, "5", "12"),
              trade(Side.SELL, "5", "9"), trade(Side.SELL, "5", "20", TradeStatus.REFUSED)]
    assert performance.win_rate(trades) == 0.5


def test_summarize_reports_return_and_counts() -> None:
    result = performance.summarize(Decimal(1000), [Decimal(1100), Decimal(1050)],
                                   [trade(Side.BUY, "1", "1"),
                                    trade(Side.BUY, "1", "1", TradeStatus.REFUSED)], 252)
    assert result["final_equity"] == "1050.000000"
    assert result["return_pct"] == 5.0
    assert result["trades"] == 1 and result["refused"] == 1
    assert math.isclose(result["max_drawdown_pct"], 100 * (1 - 1050 / 1100), rel_tol=1e-3)


def test_covers_close_shorts_and_win_when_bought_back_cheaper() -> None:
    # Short 10 at 50, cover 5 at 40 (a gain), cover 5 at 60 by a margin call (a loss).
    margin_call = replace(trade(Side.COVER, "5", "60"), reason="margin call: equity ...")
    trades = [trade(Side.SHORT, "10", "50"), trade(Side.COVER, "5", "40"), margin_call]
    tally = performance.TradeTally.of(trades)
    assert (tally.closes, tally.wins, tally.shorts, tally.covers, tally.margin_calls) == (
        2, 1, 1, 2, 1)
    assert performance.win_rate(trades) == 0.5


def test_equity_return_and_drawdown_hold_with_a_short() -> None:
    # 1,000 cash, short 10 at 50: cash 1,500, holdings -10. Closes 50, 60, 40:
    # equity 1,500 - 10 x close = 1,000, 900, 1,100.
    from core.records import Portfolio

    short = Portfolio(1, Decimal(1500), {"X": Decimal(-10)})
    curve = [short.equity({"X": Decimal(c)}) for c in (50, 60, 40)]
    assert curve == [Decimal(1000), Decimal(900), Decimal(1100)]
    result = performance.summarize(Decimal(1000), curve, [trade(Side.SHORT, "10", "50")], 252)
    assert result["return_pct"] == 10.0 and result["max_drawdown_pct"] == 10.0
    assert result["shorts"] == {"short_fills": 1, "cover_fills": 0, "margin_calls": 0}
