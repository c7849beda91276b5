"""Replay: play a recorded run's decisions again, with no model call.

Step N of the new run takes the orders that step N of the source run took: its
decision's orders (its cancels and close-all too) or, for an agent that acted through
its tools (an LLM run), the orders the ledger holds for that step in seq order (the
trades, for a run from before orders were recorded). A replay on the same data gives
the same trades with no model call: how users reproduce and compare runs. A cancel
names an order of the source run: it cancels this run's order of the same key (step,
seq); cancels made through tools are not replayed. The answers of the source's research
and outside tools are carried into the replay's decisions, never asked for again.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.errors import InvalidSpec
from core.records import Order
from core.research.audit import DATED_LISTS
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
        acted = recorded.orders or recorded.cancels or recorded.close_all
        orders = recorded.orders if acted else self._tool_orders(ctx.step)
        return DecisionResult(
            action=recorded.action, orders=list(orders), outcome=recorded.outcome,
            reasoning=f"replay of run {self.source_run_id}: {recorded.reasoning or ''}".strip(),
            cancels=self._own_orders(ctx.run.id, recorded.cancels),
            close_all=recorded.close_all, tool_calls=self._research_seen(recorded.tool_calls),
        )

    def _research_seen(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the source step's research and outside tools answered, as recorded (no
        provider is asked again): the replay's audit reads what its source saw."""
        return [{**call, "replayed_from": self.source_run_id} for call in calls
                if call.get("name") in DATED_LISTS or "server" in call]

    def _tool_orders(self, step: int) -> list[Order]:
        # The ledger's NUMERIC comes back as 10.000000: replay the order as sent.
        placed = self._store.step_orders(self.source_run_id, step)
        if placed:
            return [replace(o.order(), quantity=_as_sent(o.quantity)) for o in placed]
        return [Order(t.side, t.symbol, _as_sent(t.quantity))
                for t in self._store.step_trades(self.source_run_id, step)]

    def _own_orders(self, run_id: int, source_ids: list[int]) -> list[int]:
        """This run's orders of the same keys as the source run's `source_ids`."""
        if not source_ids:
            return []
        keys = {(o.step, o.seq) for o in self._store.list_orders(self.source_run_id,
                                                                  ids=source_ids)}
        own = []
        for step in sorted({step for step, _ in keys}):
            own += [o.id for o in self._store.step_orders(run_id, step)
                    if (o.step, o.seq) in keys]
        return own


def _as_sent(quantity: Decimal) -> Decimal:
    whole = quantity.to_integral_value()
    return whole if whole == quantity else quantity.normalize()
