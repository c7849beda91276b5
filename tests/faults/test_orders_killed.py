"""A run with resting orders, its runner killed with SIGKILL and started again.

The run replays a recorded decision that placed two GTC buy limits at its first step:
one the bars reach early, one they reach late. The runner (a real `python -m runner`
process) is killed with SIGKILL once while the late order rests, and once more just
before the bar that fills it (the kill may land in that very step). Each new runner
resumes from the checkpoint with the book it reads from the ledger: every order is
placed once and filled once, on the bar that reaches it, and the ledger has one fill
each.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest

from core.bars import Bar
from core.eventlog import EventLog
from core.records import Decision, Order, OrderState, OrderType, Side, TimeInForce
from core.status import RunStatus
from core.store import Store
from runner.marketdata import market_data_for, timeline_for
from runner.settings import RunnerSettings
from tests.factories import intraday_spec, make_model, make_run
from tests.integration.test_runner_process import (
    assert_ledger_consistent,
    start_runner,
    wait_for_step,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
SLOW = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.02"}


def first_new_low(bars: list[Bar], after: int) -> tuple[int, Decimal]:
    """The first step from `after` whose low is under every low since step 1, and a limit
    price just under that earlier minimum: a buy limit there fills first on that step."""
    lowest = min(b.low for b in bars[1:after])
    for step in range(after, len(bars)):
        if bars[step].low < lowest - Decimal("0.01"):
            return step, lowest - Decimal("0.01")
        lowest = min(lowest, bars[step].low)
    raise AssertionError(f"the bars make no new low after step {after}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no handler runs, nothing is saved
    proc.wait(timeout=10)


def test_resting_orders_fill_once_across_sigkills(
        store: Store, event_log: EventLog, runner_env: dict[str, str]) -> None:
    spec = intraday_spec(seed=7)
    timeline = timeline_for(spec)
    bars = market_data_for(spec, store, RunnerSettings().data_dir).bars("AAPL", timeline)
    early_step, early_price = first_new_low(bars, 5)
    late_step, late_price = first_new_low(bars, 200)
    assert early_step < 40 and late_step >= 200

    model = make_model(store, "user-a", "orders")
    source = make_run(store, intraday_spec(seed=7, decider="buy_and_hold"), model=model)
    orders = [Order(Side.BUY, "AAPL", Decimal(1), OrderType.LIMIT, limit_price=price,
                    time_in_force=TimeInForce.GTC) for price in (early_price, late_price)]
    store.record_decision(Decision(run_id=source.id, step=0, bar_time=timeline.times[0],
                                   action="buy", orders=orders, reasoning="two limits",
                                   outcome="trade", latency_ms=1.0))
    run = make_run(store, intraday_spec(seed=7, decider="replay",
                                        decider_params={"source_run_id": source.id}),
                   model=model)

    first = start_runner(run.id, runner_env, **SLOW)
    wait_for_step(event_log, run.id, 60)
    kill(first)
    book = store.list_orders(run.id)
    assert [o.state for o in book] == [OrderState.FILLED, OrderState.OPEN]
    assert 60 <= store.get_run(run.id).steps_done < late_step

    second = start_runner(run.id, runner_env, **SLOW)
    wait_for_step(event_log, run.id, late_step)  # the step before the fill is done
    kill(second)  # in the pause before the fill's step, or in that very step
    assert store.get_run(run.id).steps_done < len(timeline)

    third = start_runner(run.id, runner_env)
    _, stderr = third.communicate(timeout=120)
    assert third.returncode == 0, stderr[-3000:]
    assert "resuming after checkpoint" in stderr

    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 3
    assert [d.step for d in store.list_decisions(run.id)] == list(range(len(timeline)))
    early, late = store.list_orders(run.id)
    assert (early.state, early.filled_at, early.fill_price) == (
        OrderState.FILLED, bars[early_step].time, min(bars[early_step].open, early_price))
    assert (late.state, late.filled_at, late.fill_price) == (
        OrderState.FILLED, bars[late_step].time, min(bars[late_step].open, late_price))
    for order in (early, late):
        events = store.list_order_events(run.id, order_id=order.id)
        assert [e.kind.value for e in events] == ["placed", "filled"]
    trades = store.list_trades(run.id)
    assert [(t.order_id, t.price) for t in trades] == [
        (early.id, early.fill_price), (late.id, late.fill_price)]
    assert store.get_portfolio(run.id).holdings == {"AAPL": Decimal(2)}
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)
    assert (done.result or {})["orders"] == {"filled": 2}
