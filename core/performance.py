"""Run performance: return, drawdown, Sharpe, win rate, and the buy-and-hold yardstick.

Sharpe is annualized by the bar interval: sqrt(252) for daily bars, sqrt(252 x 390)
for minute bars, with a zero risk-free rate. Equity is cash + sum of quantity x price,
short positions (negative quantities) included, so return and drawdown hold with
shorts: a short's proceeds are in cash and its value counts against it. A closing
trade is a sell of a long or a cover of a short; it wins when it realized a gain
against the position's average price.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from core.margin import MARGIN_CALL
from core.records import Side, Trade

Q = Decimal("0.000001")


def max_drawdown(equity: Sequence[float]) -> float:
    peak, worst = -math.inf, 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = min(worst, value / peak - 1)
    return -worst


def step_returns(equity: Sequence[float]) -> list[float]:
    """The simple return of each step (b / a - 1), skipping a step from a non-positive
    equity (no return is defined there)."""
    return [b / a - 1 for a, b in itertools.pairwise(equity) if a > 0]


def sharpe(equity: Sequence[float], periods_per_year: int) -> float | None:
    """Mean over sample standard deviation (n - 1) of the step returns, times
    sqrt(periods_per_year); None under two returns or when they do not vary."""
    returns = step_returns(equity)
    if len(returns) < 2 or max(returns) == min(returns):
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods_per_year)


@dataclass
class TradeTally:
    """Fills, refusals and closing trades of a ledger, gathered in one pass over it (the
    ledger may be streamed: it is never held as a whole)."""

    filled: int = 0
    refused: int = 0
    wins: int = 0
    closes: int = 0
    qty: dict[str, Decimal] = field(default_factory=dict)
    cost: dict[str, Decimal] = field(default_factory=dict)
    # Short positions: shares short and the proceeds still held against them.
    short_qty: dict[str, Decimal] = field(default_factory=dict)
    proceeds: dict[str, Decimal] = field(default_factory=dict)
    shorts: int = 0  # filled short sales
    covers: int = 0  # filled covers, margin calls' included
    margin_calls: int = 0  # covers a margin call made
    # Realized P&L of the closing trades (against the position's average price, fees
    # on both legs included): the sum of the gains and of the losses (positive).
    gross_profit: Decimal = Decimal(0)
    gross_loss: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)  # quantity x price of every fill
    fees: Decimal = Decimal(0)  # of every fill
    # Whether any position was open after the last fill of each step that had fills.
    exposure: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, trades: Iterable[Trade]) -> TradeTally:
        tally = cls()
        for t in trades:
            tally.add(t)
        return tally

    def add(self, t: Trade) -> None:
        if not t.filled:
            self.refused += 1
            return
        self.filled += 1
        self.notional += t.quantity * t.price
        self.fees += t.fees
        self._fill(t)
        self.exposure[t.step] = self.holding()

    def _fill(self, t: Trade) -> None:
        if t.side is Side.BUY:
            self.qty[t.symbol] = self.qty.get(t.symbol, Decimal(0)) + t.quantity
            self.cost[t.symbol] = (self.cost.get(t.symbol, Decimal(0))
                                   + t.quantity * t.price + t.fees)
        elif t.side is Side.SELL and self.qty.get(t.symbol):
            avg = self.cost[t.symbol] / self.qty[t.symbol]
            self._close(t.price * t.quantity - t.fees - avg * t.quantity)
            self.cost[t.symbol] -= avg * t.quantity
            self.qty[t.symbol] -= t.quantity
        elif t.side is Side.SHORT:
            self.shorts += 1
            self.short_qty[t.symbol] = self.short_qty.get(t.symbol, Decimal(0)) + t.quantity
            self.proceeds[t.symbol] = (self.proceeds.get(t.symbol, Decimal(0))
                                       + t.quantity * t.price - t.fees)
        elif t.side is Side.COVER:
            self.covers += 1
            self.margin_calls += int((t.reason or "").startswith(MARGIN_CALL))
            if self.short_qty.get(t.symbol):
                avg = self.proceeds[t.symbol] / self.short_qty[t.symbol]
                self._close(avg * t.quantity - t.price * t.quantity - t.fees)
                self.proceeds[t.symbol] -= avg * t.quantity
                self.short_qty[t.symbol] -= t.quantity

    def _close(self, pnl: Decimal) -> None:
        self.closes += 1
        self.wins += int(pnl > 0)
        if pnl > 0:
            self.gross_profit += pnl
        else:
            self.gross_loss -= pnl

    def holding(self) -> bool:
        """Any position open (long or short) after the fills so far."""
        return any(self.qty.values()) or any(self.short_qty.values())

    def exposed_steps(self, steps: int) -> int:
        """How many of the first `steps` steps ended with a position open: a step
        without fills keeps the state of the step before it."""
        held, count = False, 0
        for step in range(steps):
            held = self.exposure.get(step, held)
            count += held
        return count

    @property
    def win_rate(self) -> float | None:
        return None if self.closes == 0 else self.wins / self.closes


def win_rate(trades: Iterable[Trade]) -> float | None:
    """Share of closing trades (sells of longs, covers of shorts) that realized a gain
    against the position's average price."""
    return TradeTally.of(trades).win_rate


def summarize(initial_cash: Decimal, equity: Sequence[Decimal], trades: Iterable[Trade],
              periods_per_year: int) -> dict[str, Any]:
    return summary_of(initial_cash, equity, TradeTally.of(trades), periods_per_year)


def summary_of(initial_cash: Decimal, equity: Sequence[Decimal], tally: TradeTally,
               periods_per_year: int) -> dict[str, Any]:
    """summarize() from a ledger already tallied (one pass serves the metrics too)."""
    curve = [float(initial_cash)] + [float(e) for e in equity]
    final = equity[-1] if equity else initial_cash
    return {
        "final_equity": str(final.quantize(Q)),
        "return_pct": round((float(final) / float(initial_cash) - 1) * 100, 4),
        "max_drawdown_pct": round(max_drawdown(curve) * 100, 4),
        "sharpe": _round(sharpe(curve, periods_per_year)),
        "trades": tally.filled,
        "refused": tally.refused,
        "win_rate": _round(tally.win_rate),
        "shorts": {"short_fills": tally.shorts, "cover_fills": tally.covers,
                   "margin_calls": tally.margin_calls},
    }


def buy_and_hold_curve(initial_cash: Decimal, entry_price: Decimal,
                       closes: Sequence[Decimal], fee: Decimal = Decimal(0)) -> list[Decimal]:
    shares = ((initial_cash - fee) / entry_price).to_integral_value(rounding=ROUND_DOWN)
    cash = initial_cash - shares * entry_price - fee
    return [cash + shares * c for c in closes]


def split_buy_and_hold_curve(initial_cash: Decimal, entries: Mapping[str, Decimal],
                             closes: Mapping[str, Sequence[Decimal]],
                             fee: Decimal = Decimal(0)) -> list[Decimal]:
    """The cash split evenly over the symbols, each part bought at its entry price and
    held: the whole's value at each close (the benchmark of a run)."""
    if not closes:
        return []
    per_symbol = initial_cash / len(closes)
    curves = [buy_and_hold_curve(per_symbol, entries[symbol], series, fee)
              for symbol, series in closes.items()]
    return [sum(values, Decimal(0)) for values in zip(*curves, strict=True)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def periods_per_year(mode: str) -> int:
    """252 sessions a year; 390 minutes a regular session."""
    return 252 * 390 if mode == "intraday" else 252
