"""Replaying a step a runner may have played before: its crash, an outage, a new pod.

A step's decision is recorded before its orders trade, and every order, trade and
order change is keyed by (run, step, seq): a step played again executes its recorded
decision, and the ledger answers each order with what was done the first time. Two
things need the ledger itself:

- a decider acting through tools acts before its decision is recorded: a runner that
  died in between left orders (and trades) and no decision. The step is not decided
  again (it would act twice): its record is rebuilt from the ledger;
- the events of a replayed step are every order change of the step, this attempt's
  or an earlier one's, read back from the ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from core.orders import ENGINE_SEQ
from core.records import Decision, Run, Trade
from core.store import Store
from runner.prices import RunPrices
from runner.trading import JournalItem, OrderChange

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """A step's decision made before this play of it."""

    decision: Decision
    # Trades its tools made by an attempt that died before recording it: events to send.
    tool_trades: list[Trade] = field(default_factory=list)


def recorded_decision(store: Store, run: Run, step: int, prices: RunPrices, *,
                      attempt: int) -> Recorded | None:
    """The step's decision, if it was made before (by this runner before an outage, or
    by an earlier attempt); None when the step is still to decide."""
    decision = store.get_decision(run.id, step)
    if decision is not None:
        return Recorded(decision)
    if step == run.steps_done and run.attempts > 1:
        return _interrupted_decision(store, run, step, prices, attempt=attempt)
    return None


def _interrupted_decision(store: Store, run: Run, step: int, prices: RunPrices, *,
                          attempt: int) -> Recorded | None:
    """The record of a decision whose tools acted before its runner died: the
    decider's orders of the step (trades of a ledger from before orders were recorded
    count too)."""
    made = [t for t in store.step_trades(run.id, step) if t.seq < ENGINE_SEQ]
    placed = store.step_orders(run.id, step)
    if not made and not placed:
        return None
    log.info("step %d acted through tools before a restart; not deciding it again", step)
    sides = {o.side.value for o in placed} | {t.side.value for t in made}
    decision = store.record_decision(Decision(
        run_id=run.id, step=step, bar_time=prices.time(step),
        action=",".join(sorted(sides)), orders=[],
        reasoning=f"decided before a restart: its {len(made)} trade(s) and "
                  f"{len(placed)} order(s) through tools stand",
        outcome="trade", latency_ms=0.0), attempt=attempt)
    return Recorded(decision, made)


def step_changes(store: Store, run_id: int, step: int) -> list[JournalItem]:
    """The ledger's order changes made while `step` was played (by any attempt)."""
    events = store.list_order_events(run_id, step=step, limit=10_000)
    orders = {o.id: o for o in store.list_orders(
        run_id, ids={e.order_id for e in events}, limit=10_000)}
    return [OrderChange(e, orders[e.order_id]) for e in events if e.order_id in orders]
