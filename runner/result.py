"""A run's result as the runner saves it (core.eventlog.payloads.RunResult): what
core.lifecycle.run_result computes from the ledger for the runner and the controller
alike, with what only the runner knows, from its bars and its budget: the buy-and-hold
benchmark over the same completed steps, the data quality, the spend, and the value
short at the last close played.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core import margin, performance
from core.eventlog.payloads import Benchmark
from core.lifecycle import data_label, run_result
from core.records import Run
from core.store import Store
from runner.budget import SpendGuard
from runner.prices import RunPrices


def session_result(store: Store, run: Run, ending: str, *, decider: str,
                   prices: RunPrices, guard: SpendGuard | None) -> dict[str, Any]:
    steps = store.get_run(run.id).steps_done
    bench = buy_and_hold(run, prices, steps)
    result = run_result(store, run, ending, decider=decider,
                        benchmark=None if bench is None else dict(bench),
                        data=data_quality(run, prices))
    if guard is not None:
        result["budget"] = guard.summary()
    if steps:
        result["final_short_value"] = short_value(store, run, prices, steps)
    return result


def data_quality(run: Run, prices: RunPrices) -> dict[str, Any]:
    """Where the bars came from, how many, and how many were made up (no trade)."""
    bars = [b for series in prices.bars.values() for b in series]
    return {**data_label(run.spec), "bars": len(bars),
            "bars_filled": sum(1 for b in bars if b.filled)}


def buy_and_hold_curve(run: Run, prices: RunPrices, steps: int) -> list[Decimal]:
    """The initial cash split evenly and bought at the first fill price: its value at
    each of the first `steps` closes."""
    if steps == 0:
        return []
    closes = {s: [b.close for b in bars[:steps]] for s, bars in prices.bars.items()}
    return performance.split_buy_and_hold_curve(run.spec.initial_cash, prices.fill_prices(0),
                                                closes, run.spec.fee_per_trade)


def buy_and_hold(run: Run, prices: RunPrices, steps: int) -> Benchmark | None:
    """The buy-and-hold benchmark over the first `steps` closes (buy_and_hold_curve)."""
    if steps == 0:
        return None
    combined = buy_and_hold_curve(run, prices, steps)
    bench = performance.summarize(run.spec.initial_cash, combined, [],
                                  prices.timeline.periods_per_year)
    return {"final_equity": bench["final_equity"], "return_pct": bench["return_pct"],
            "max_drawdown_pct": bench["max_drawdown_pct"], "sharpe": bench["sharpe"]}


def short_value(store: Store, run: Run, prices: RunPrices, steps: int) -> str:
    """What is short at the last close played (zero without shorts)."""
    shorts = margin.short_value(store.get_portfolio(run.id), prices.closes(steps - 1))
    return str(shorts.quantize(performance.Q))
