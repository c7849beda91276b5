"""Run performance: return, drawdown, Sharpe, win rate, and the buy-and-hold yardstick.

Sharpe is annualized by the bar interval: sqrt(252) for daily bars, sqrt(252 x 390)
for minute bars, with a zero risk-free rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any

from core.records import Side, Trade

Q = Decimal("0.000001")


def max_drawdown(equity: Sequence[float]) -> float:
    peak, worst = -math.inf, 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = min(worst, value / peak - 1)
    return -worst


def sharpe(equity: Sequence[float], periods_per_year: int) -> float | None:
    returns = [b / a - 1 for a, b in itertools.pairwise(equity) if a > 0]
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods_per_year)


def win_rate(trades: Sequence[Trade]) -> float | None:
    """Share of closing sells that realized a gain against the average cost."""
    qty: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    wins = closes = 0
    for t in trades:
        if not t.filled:
            continue
        if t.side is Side.BUY:
            qty[t.symbol] = qty.get(t.symbol, Decimal(0)) + t.quantity
            cost[t.symbol] = cost.get(t.symbol, Decimal(0)) + t.quantity * t.price + t.fees
        elif t.side is Side.SELL and qty.get(t.symbol):
            avg = cost[t.symbol] / qty[t.symbol]
            closes += 1
            wins += int(t.price * t.quantity - t.fees > avg * t.quantity)
            cost[t.symbol] -= avg * t.quantity
            qty[t.symbol] -= t.quantity
    return None if closes == 0 else wins / closes


def summarize(initial_cash: Decimal, equity: Sequence[Decimal], trades: Sequence[Trade],
              periods_per_year: int) -> dict[str, Any]:
    curve = [float(initial_cash)] + [float(e) for e in equity]
    final = equity[-1] if equity else initial_cash
    filled = [t for t in trades if t.filled]
    return {
        "final_equity": str(final.quantize(Q)),
        "return_pct": round((float(final) / float(initial_cash) - 1) * 100, 4),
        "max_drawdown_pct": round(max_drawdown(curve) * 100, 4),
        "sharpe": _round(sharpe(curve, periods_per_year)),
        "trades": len(filled),
        "refused": len(trades) - len(filled),
        "win_rate": _round(win_rate(trades)),
    }


def buy_and_hold_curve(initial_cash: Decimal, entry_price: Decimal,
                       closes: Sequence[Decimal], fee: Decimal = Decimal(0)) -> list[Decimal]:
    shares = ((initial_cash - fee) / entry_price).to_integral_value(rounding=ROUND_DOWN)
    cash = initial_cash - shares * entry_price - fee
    return [cash + shares * c for c in closes]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def ledger_result(initial_cash: Decimal, equity: Sequence[Decimal], trades: Sequence[Trade],
                  periods_per_year: int, *, steps_total: int, ending: str) -> dict[str, Any]:
    """A result from the ledger alone: what the controller saves for a runner that died
    without saving its own (no buy-and-hold benchmark: that needs the bars)."""
    summary = summarize(initial_cash, equity, trades, periods_per_year)
    summary.update({"ending": ending, "steps_done": len(equity), "steps_total": steps_total,
                    "benchmark": None, "from_ledger": True})
    return summary


def periods_per_year(mode: str) -> int:
    """252 sessions a year; 390 minutes a regular session."""
    return 252 * 390 if mode == "intraday" else 252
