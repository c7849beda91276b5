"""The standard metrics of a run (core.metrics): the same figures as empyrical-reloaded
on the same returns, hand-computed values on fixed series, a drawdown that never
recovers, trades (profit factor, turnover, exposure, fees), the LLM figures, and a run
without trades or steps (figures defined or null, never NaN, never an exception)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import empyrical
import numpy as np
import pytest

from core import metrics, performance
from core.records import Side, Trade, TradeStatus

T0 = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
DAILY = performance.periods_per_year("daily")
MINUTES = performance.periods_per_year("intraday")


def curve(*values: float | str) -> list[Decimal]:
    return [Decimal(str(v)) for v in values]


def trade(step: int, side: Side, qty: str, price: str, fees: str = "0",
          status: TradeStatus = TradeStatus.FILLED) -> Trade:
    filled = status is TradeStatus.FILLED
    return Trade(id=0, run_id=1, step=step, seq=0, bar_time=T0,
                 filled_at=T0 if filled else None, side=side, symbol="X",
                 quantity=Decimal(qty), price=Decimal(price), fees=Decimal(fees),
                 status=status, reason=None, cash_after=Decimal(0), reasoning=None,
                 created_at=T0)


def random_curve(seed: int, steps: int, drift: float, vol: float) -> list[Decimal]:
    rng = np.random.default_rng(seed)
    values = 100_000 * np.cumprod(1 + rng.normal(drift, vol, steps))
    return [Decimal(100_000), *(Decimal(f"{v:.4f}") for v in values)]


def strict_json(m: Any) -> None:
    json.dumps(m, allow_nan=False)  # no NaN, no infinity


# -- the same figures as empyrical -----------------------------------------------------

@pytest.mark.parametrize(("equity", "per_year"), [
    (random_curve(4, 250, 0.0008, 0.012), DAILY),  # a year of daily sessions, up
    (random_curve(2, 120, -0.001, 0.02), DAILY),  # a losing half year
    (random_curve(3, 390, 0.00001, 0.0008), MINUTES),  # one intraday session
], ids=["daily-up", "daily-down", "intraday"])
def test_the_figures_are_empyricals_on_the_same_returns(equity: list[Decimal],
                                                        per_year: int) -> None:
    m = metrics.compute(equity, [], per_year)
    values = np.array([float(e) for e in equity])
    returns = values[1:] / values[:-1] - 1
    # Ratios are rounded to 6 decimals, percentages to 6 decimals of a percent.
    assert m["sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=per_year), abs=1e-6)
    assert m["sortino"] == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=per_year), abs=1e-6)
    assert m["volatility_pct"] / 100 == pytest.approx(
        empyrical.annual_volatility(returns, annualization=per_year), abs=1e-8)
    assert m["max_drawdown_pct"] / 100 == pytest.approx(
        -empyrical.max_drawdown(returns), abs=1e-8)
    annual = empyrical.annual_return(returns, annualization=per_year)
    calmar = empyrical.calmar_ratio(returns, annualization=per_year)
    if per_year == MINUTES:  # a minute's growth to the power of 98,280: far from 1
        assert m["annual_return_pct"] == pytest.approx(annual * 100, rel=1e-9)
        assert m["calmar"] == pytest.approx(calmar, rel=1e-9)
    else:
        assert m["annual_return_pct"] / 100 == pytest.approx(annual, abs=1e-8)
        assert m["calmar"] == pytest.approx(calmar, abs=1e-6)
    strict_json(m)


# -- hand-computed -----------------------------------------------------------------------

def test_hand_computed_figures_of_a_fixed_series() -> None:
    # Returns +10%, -10%, 0, +10%; four steps a year, so one year and CAGR = total.
    m = metrics.compute(curve(100, 110, 99, 99, 108.9), [], 4)
    assert m["total_return_pct"] == pytest.approx(8.9)
    assert m["annual_return_pct"] == pytest.approx(8.9)
    # mean 0.025; squared deviations .005625 + .015625 + .000625 + .005625 = .0275
    std = math.sqrt(0.0275 / 3)
    assert m["volatility_pct"] == round(std * 2 * 100, 6)  # x sqrt(4)
    assert m["sharpe"] == round(0.025 / std * 2, 6)
    # Downside deviation sqrt((0 + .01 + 0 + 0) / 4) x 2 = 0.1; mean x 4 = 0.1.
    assert m["sortino"] == 1.0
    assert m["max_drawdown_pct"] == 10.0  # 110 -> 99
    assert m["calmar"] == pytest.approx(0.89)  # 8.9% / 10%
    # From the peak at step 1 (110) to the end (step 4) without getting back to it.
    assert m["max_drawdown_steps"] == 3
    assert m["max_drawdown_recovered"] is False


def test_a_drawdown_that_never_recovers() -> None:
    m = metrics.compute(curve(100, 120, 110, 100, 90, 95), [], DAILY)
    assert m["max_drawdown_pct"] == 25.0  # 120 -> 90
    assert m["max_drawdown_steps"] == 4  # step 1 to the last step, 5
    assert m["max_drawdown_recovered"] is False
    assert m["total_return_pct"] == pytest.approx(-5.0)
    assert m["calmar"] is not None and m["calmar"] < 0


def test_the_longest_drawdown_and_whether_the_deepest_recovered() -> None:
    # A 10% drawdown of 2 steps (0 -> 2), then a 6% one of 4 steps (2 -> 6).
    m = metrics.compute(curve(100, 90, 100, 95, 94, 96, 101), [], DAILY)
    assert (m["max_drawdown_pct"], m["max_drawdown_steps"]) == (10.0, 4)
    assert m["max_drawdown_recovered"] is True
    # The longest (4 steps, 5%) recovered; the deepest (20%, to the end) did not.
    m = metrics.compute(curve(100, 95, 96, 97, 100, 80), [], DAILY)
    assert (m["max_drawdown_pct"], m["max_drawdown_steps"]) == (20.0, 4)
    assert m["max_drawdown_recovered"] is False
    dd = metrics.drawdown([100.0, 101.0, 102.0])
    assert (dd.depth, dd.longest_steps, dd.deepest_recovered) == (0.0, 0, True)


# -- trades ------------------------------------------------------------------------------

def test_trade_figures() -> None:
    trades = [
        trade(0, Side.BUY, "10", "10", fees="1"),  # cost 101: 10.10 a share
        trade(1, Side.BUY, "5", "10", status=TradeStatus.REFUSED),  # not a fill
        trade(2, Side.SELL, "5", "12", fees="1"),  # 60 - 1 - 50.50 = +8.50
        trade(3, Side.SELL, "5", "9", fees="1"),  # 45 - 1 - 50.50 = -6.50, flat
        trade(5, Side.SHORT, "2", "50"),  # proceeds 100
        trade(6, Side.COVER, "2", "40"),  # 100 - 80 = +20, flat
    ]
    equity = curve(1000, 999, 1000, 1007.5, 1001, 1001, 1001, 1021, 1021)
    m = metrics.compute(equity, trades, DAILY)
    assert m["trades"] == 5
    assert m["win_rate"] == round(2 / 3, 6)
    assert m["profit_factor"] == round(28.5 / 6.5, 6)
    notional = 100 + 60 + 45 + 100 + 80
    mean_equity = sum(float(e) for e in equity) / len(equity)
    assert m["turnover"] == round(notional / mean_equity, 6)
    # Holding after steps 0, 1, 2 (steps 3 and 4 flat), 5; flat again from step 6 on.
    assert m["exposure_pct"] == round(4 / 8 * 100, 6)
    assert m["fees"] == "3.000000"


def test_profit_factor_is_null_without_a_loss() -> None:
    trades = [trade(0, Side.BUY, "1", "10"), trade(1, Side.SELL, "1", "11")]
    m = metrics.compute(curve(100, 100, 101), trades, DAILY)
    assert m["profit_factor"] is None
    assert m["win_rate"] == 1.0
    assert m["exposure_pct"] == 50.0  # held after step 0, flat after step 1


def test_a_run_without_trades_or_steps() -> None:
    empty = metrics.compute(curve(1000), [], DAILY)
    assert empty == {
        "total_return_pct": 0.0, "annual_return_pct": None, "volatility_pct": None,
        "sharpe": None, "sortino": None, "calmar": None, "max_drawdown_pct": 0.0,
        "max_drawdown_steps": 0, "max_drawdown_recovered": True, "win_rate": None,
        "profit_factor": None, "turnover": 0.0, "exposure_pct": None, "fees": "0.000000",
        "trades": 0, "tokens": 0, "llm_cost": "0", "cost_per_decision": None,
        "return_per_llm_dollar": None}
    flat = metrics.compute(curve(1000, 1000, 1000, 1000), [], DAILY)
    assert (flat["annual_return_pct"], flat["volatility_pct"]) == (0.0, 0.0)
    assert flat["sharpe"] is flat["sortino"] is flat["calmar"] is None  # no variation
    assert flat["exposure_pct"] == 0.0
    for m in (empty, flat):
        strict_json(m)
    with pytest.raises(ValueError):
        metrics.compute([], [], DAILY)


def test_undefined_ratios_are_null_never_nan() -> None:
    up_only = metrics.compute(curve(100, 101, 103, 106), [], DAILY)
    assert up_only["sortino"] is None  # no losing step: no downside deviation
    assert up_only["calmar"] is None  # no drawdown
    wiped = metrics.compute(curve(100, 50, 0), [], DAILY)
    assert wiped["annual_return_pct"] == -100.0
    assert wiped["max_drawdown_pct"] == 100.0
    assert wiped["max_drawdown_recovered"] is False
    # A gain far past a float once annualized over a minute's years.
    huge = metrics.compute(curve(100, 10_000), [], MINUTES)
    assert huge["annual_return_pct"] is None and huge["calmar"] is None
    for m in (up_only, wiped, huge):
        strict_json(m)


# -- LLM figures -------------------------------------------------------------------------

def test_llm_figures() -> None:
    usage = metrics.LlmUsage(tokens_in=9000, tokens_out=1000, cost=Decimal("0.5"),
                             decisions=3)
    m = metrics.compute(curve(1000, 1010, 1020), [], DAILY, usage)
    assert m["tokens"] == 10_000
    assert m["llm_cost"] == "0.5"
    assert m["cost_per_decision"] == "0.16666667"
    assert m["return_per_llm_dollar"] == 40.0  # $20 earned per $0.50 spent
    unknown = metrics.compute(curve(1000, 1010), [], DAILY,
                              metrics.LlmUsage(tokens_in=10, cost=None, decisions=1))
    assert unknown["llm_cost"] is unknown["cost_per_decision"] is None
    assert unknown["return_per_llm_dollar"] is None
    free = metrics.compute(curve(1000, 1010), [], DAILY, metrics.LlmUsage(decisions=1))
    assert (free["llm_cost"], free["cost_per_decision"]) == ("0", "0.00000000")
    assert free["return_per_llm_dollar"] is None


def test_summarize_is_unchanged_by_the_tally_it_shares() -> None:
    trades = [trade(0, Side.BUY, "10", "100"), trade(1, Side.SELL, "10", "110")]
    equity = curve(1000, 1100)
    assert performance.summarize(Decimal(1000), equity, trades, DAILY) == \
        performance.summary_of(Decimal(1000), equity, performance.TradeTally.of(trades),
                               DAILY)
