"""Replay: play a recorded run's decisions again, with no model call.

Step N of the new run takes the orders that step N of the source run took: its
decision's orders or, for an agent that traded through its tools (an LLM run), the
trades the ledger holds for that step, filled and refused, in seq order. A replay on
the same data gives the same trades with no model call: how users reproduce and
compare runs.
"""

from __future__ import annotations

from decimal import Decimal

from core.errors import InvalidSpec
from core.records import Order
from core.spec import RunSpec, replay_mismatch
from core.store import Store
from runner.deciders.base import DecisionResult, StepContext


class ReplayDecider:
    name = "replay"
    blocking = False

    def __init__(self, store: Store, source_run_id: int, user_id: str, spec: RunSpec) -> None:
        source = store.get_run(source_run_id, user_id)  # another user's run is NotFound
        if mismatch := replay_mismatch(source.spec, spec):
            raise InvalidSpec(f"replay source run {source_run_id} {mismatch}")
        self.source_run_id = source_run_id
        self._store = store

    def decide(self, ctx: StepContext) -> DecisionResult:
        # The source step's records only, read per step: the source run's length never
        # decides what one step reads (nor what this decider holds).
        recorded = self._store.get_decision(self.source_run_id, ctx.step)
        if recorded is None:
            return DecisionResult.hold(f"run {self.source_run_id} has no decision at this step")
        orders = recorded.orders or self._tool_orders(ctx.step)
        return DecisionResult(
            action=recorded.action, orders=list(orders), outcome=recorded.outcome,
            reasoning=f"replay of run {self.source_run_id}: {recorded.reasoning or ''}".strip(),
        )

    def _tool_orders(self, step: int) -> list[Order]:
        # The ledger's NUMERIC comes back as 10.000000: replay the order as sent.
        return [Order(t.side, t.symbol, _as_sent(t.quantity))
                for t in self._store.step_trades(self.source_run_id, step)]


def _as_sent(quantity: Decimal) -> Decimal:
    whole = quantity.to_integral_value()
    return whole if whole == quantity else quantity.normalize()
