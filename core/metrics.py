"""The standard performance metrics of a run, from its ledger: what an honest comparison
of models reads (README "Metrics of a run" defines each one).

Pure: an equity curve (one value per step, the initial cash first), the ledger's trades
(core.performance.TradeTally, one pass over them) and the periods in a year
(core.performance.periods_per_year: 252 sessions, 252 x 390 minutes). Returns, drawdown
and Sharpe are core.performance's; the others follow empyrical's definitions (the unit
tests compare them with empyrical-reloaded on the same returns). Risk-free rate 0. A
ratio that is undefined (no loss, no variation, no cost) is None (JSON null), never NaN
or infinity; floats are rounded to 6 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

import numpy as np

from core import performance
from core.records import Trade

DIGITS = 6
COST_Q = Decimal("0.00000001")  # cost per decision: a cent is far too coarse


class RunMetrics(TypedDict):
    total_return_pct: float | None
    annual_return_pct: float | None  # CAGR over steps / periods_per_year years
    volatility_pct: float | None  # annualized sample std of the step returns
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown_pct: float
    max_drawdown_steps: int  # the longest drawdown, peak to recovery (or to the end)
    max_drawdown_recovered: bool  # the deepest drawdown was made good by the end
    win_rate: float | None
    profit_factor: float | None
    turnover: float | None
    exposure_pct: float | None
    fees: str
    trades: int
    tokens: int
    llm_cost: str | None  # USD; None when a decision's cost is unknown
    cost_per_decision: str | None
    return_per_llm_dollar: float | None


@dataclass(frozen=True)
class LlmUsage:
    """What a run's decisions spent: tokens, the cost in USD (None when some decision's
    cost is unknown, the model having no price) and how many decisions there were."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = Decimal(0)
    decisions: int = 0


@dataclass(frozen=True)
class Drawdown:
    depth: float  # the deepest fall from a peak, as a fraction of that peak
    longest_steps: int  # the longest spell under a peak, peak to recovery or to the end
    deepest_recovered: bool  # the deepest spell ended back at (or over) its peak


def compute(equity: Sequence[Decimal], trades: Iterable[Trade], periods_per_year: int,
            llm: LlmUsage | None = None) -> RunMetrics:
    """The metrics of a run from its equity curve (initial cash first) and trades."""
    return of_tally(equity, performance.TradeTally.of(trades), periods_per_year, llm)


def of_tally(equity: Sequence[Decimal], tally: performance.TradeTally,
             periods_per_year: int, llm: LlmUsage | None = None) -> RunMetrics:
    """compute() from a ledger already tallied (the result reads the ledger once)."""
    if not equity:
        raise ValueError("the equity curve starts with the initial cash")
    llm = llm or LlmUsage()
    curve = [float(e) for e in equity]
    steps = len(curve) - 1
    returns = np.asarray(performance.step_returns(curve), dtype=float)
    growth = curve[-1] / curve[0] if curve[0] > 0 else None
    annual = annual_return(growth, steps, periods_per_year)
    dd = drawdown(curve)
    worst = performance.max_drawdown(curve)
    mean_equity = sum(curve) / len(curve)
    pnl = equity[-1] - equity[0]
    return {
        "total_return_pct": _pct(None if growth is None else growth - 1),
        "annual_return_pct": _pct(annual),
        "volatility_pct": _pct(volatility(returns, periods_per_year)),
        "sharpe": _num(performance.sharpe(curve, periods_per_year)),
        "sortino": _num(sortino(returns, periods_per_year)),
        "calmar": _num(None if annual is None or worst <= 0 else annual / worst),
        "max_drawdown_pct": _pct(worst) or 0.0,
        "max_drawdown_steps": dd.longest_steps,
        "max_drawdown_recovered": dd.deepest_recovered,
        "win_rate": _num(tally.win_rate),
        "profit_factor": _num(None if tally.gross_loss <= 0
                              else float(tally.gross_profit / tally.gross_loss)),
        "turnover": _num(None if mean_equity <= 0 else float(tally.notional) / mean_equity),
        "exposure_pct": _pct(None if steps == 0 else tally.exposed_steps(steps) / steps),
        "fees": str(tally.fees.quantize(performance.Q)),
        "trades": tally.filled,
        "tokens": llm.tokens_in + llm.tokens_out,
        "llm_cost": None if llm.cost is None else str(llm.cost),
        "cost_per_decision": (None if llm.cost is None or llm.decisions == 0
                              else f"{(llm.cost / llm.decisions).quantize(COST_Q):f}"),
        "return_per_llm_dollar": _num(None if not llm.cost else float(pnl / llm.cost)),
    }


def annual_return(growth: float | None, steps: int, periods_per_year: int) -> float | None:
    """CAGR: growth ** (1 / years) - 1 with years = steps / periods_per_year (empyrical's
    annual_return). None without steps, for a negative final equity, or past a float."""
    if growth is None or steps == 0 or growth < 0:
        return None
    if growth == 0:
        return -1.0
    try:
        value = growth ** (periods_per_year / steps) - 1
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def volatility(returns: np.ndarray, periods_per_year: int) -> float | None:
    """Sample standard deviation (n - 1) of the step returns x sqrt(periods_per_year)."""
    if len(returns) < 2:
        return None
    return float(np.std(returns, ddof=1)) * math.sqrt(periods_per_year)


def sortino(returns: np.ndarray, periods_per_year: int) -> float | None:
    """Annualized mean return over annualized downside deviation, empyrical's way:
    sqrt(mean(min(r, 0)^2)) over every step (not only the losing ones), x sqrt(periods).
    None under two returns or without a losing step."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0:
        return None
    return float(np.mean(returns)) * periods_per_year / (downside
                                                         * math.sqrt(periods_per_year))


def drawdown(curve: Sequence[float]) -> Drawdown:
    """Depth of the deepest drawdown, the longest drawdown in steps (from its peak to the
    first step back at or over it, or to the last step if it never got back) and whether
    the deepest one was recovered (True when there was none)."""
    peak, peak_at = curve[0], 0
    depth, longest = 0.0, 0
    under = False  # in a drawdown now
    deepest_here = False  # the deepest drawdown so far is the current one
    recovered = True
    for i, value in enumerate(curve):
        if value >= peak:
            if under:
                longest = max(longest, i - peak_at)
                recovered = recovered or deepest_here
                under = deepest_here = False
            peak, peak_at = value, i
            continue
        under = True
        fall = 1 - value / peak if peak > 0 else 0.0
        if fall > depth:
            depth, deepest_here, recovered = fall, True, False
    if under:
        longest = max(longest, len(curve) - 1 - peak_at)
    return Drawdown(depth=depth, longest_steps=longest, deepest_recovered=recovered)


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, DIGITS)


def _pct(value: float | None) -> float | None:
    return None if value is None else _num(value * 100)
