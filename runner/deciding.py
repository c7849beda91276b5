"""Ask the decider about one step, within its time, and shape its answer as a Decision.

A blocking decider (an LLM) runs in a thread of its own so the loop can give up on
it: after `decision_timeout_seconds`, or `abandon_decision_seconds` after a stop. An
abandoned or failing decider is a HOLD recorded with its reason; only DeciderFailed
(a refused key, an unknown model: every step would fail alike) ends the run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

from core.records import Decision, Model, OrderRecord, Portfolio, Run, Trade
from core.store import Store
from runner import telemetry
from runner.broker import DeciderBroker, StepOrders
from runner.budget import SpendGuard
from runner.deciders import Decider, DeciderFailed, DecisionResult, StepContext
from runner.deciders.base import LazyTrades
from runner.prices import RunPrices
from runner.research import RunResearch
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Deciding:
    store: Store
    run: Run
    model: Model
    decider: Decider
    prices: RunPrices
    stop: StopSignal
    settings: RunnerSettings
    guard: SpendGuard | None = None
    research: RunResearch | None = None
    # A live run's deadline (runner.live): why a decision done now for `step` is too
    # late to trade, or None while it is in time.
    late: Callable[[int], str | None] | None = None
    _pool: cf.ThreadPoolExecutor | None = dataclasses.field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.decider.blocking:
            self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="decider")

    def decide(self, step: int, orders: StepOrders, portfolio: Portfolio,
               open_orders: list[OrderRecord], *, last: bool) -> Decision:
        """Decide (what the decision's tools did is in the trading journal). The
        decision is returned unrecorded: one that does nothing is `completed`, with
        its step's checkpoint (equity, cash), unless `last`: the run's last step, whose
        open orders (or positions, flat at the close) end after it. See
        runner.step for when each is recorded."""
        tools = DeciderBroker(orders)
        ctx = StepContext(
            run=self.run, model=self.model, step=step, steps_total=len(self.prices),
            bar_time=self.prices.time(step), history=self.prices.history(step),
            portfolio=portfolio, recent_trades=LazyTrades(self._recent_trades),
            broker=tools, stop_requested=lambda: self.stop.requested,
            over_budget=self._budget_check, open_orders=open_orders, research=self.research)
        began = time.perf_counter()
        result = self._decide(ctx)
        latency = time.perf_counter() - began
        result = _with_tool_trades(result, tools.close())
        if self.late is not None and (why := self.late(step)) is not None:
            result = _missed(result, why)
        telemetry.DECISION_LATENCY.labels(self.decider.name).observe(latency)
        telemetry.DECISIONS.labels(result.outcome).inc()
        self._count_spend(result)
        holds = not (result.orders or result.cancels or result.close_all
                     or tools.actions or last)
        return Decision(
            run_id=self.run.id, step=step, bar_time=ctx.bar_time, action=result.action,
            orders=result.orders, reasoning=result.reasoning, outcome=result.outcome,
            latency_ms=round(latency * 1000, 3), tokens_in=result.tokens_in,
            tokens_out=result.tokens_out, cost=result.cost, tool_calls=result.tool_calls,
            error=result.error, tokens_cached=result.tokens_cached,
            equity=self.prices.equity(portfolio, step) if holds else None,
            cash=portfolio.cash if holds else None, completed=holds,
            cancels=list(result.cancels), close_all=result.close_all, decided_at=_now(),
        )

    def missed(self, step: int, portfolio: Portfolio, reason: str, *,
               last: bool) -> Decision:
        """A step no decision was asked for (a live run's bar whose deadline passed, or
        a minute before its first price): `missed` with the reason, unrecorded, with
        its checkpoint unless `last` (its book ends after it)."""
        telemetry.DECISIONS.labels("missed").inc()
        return Decision(
            run_id=self.run.id, step=step, bar_time=self.prices.time(step), action="missed",
            orders=[], reasoning=reason, outcome="missed", latency_ms=0.0, error="missed",
            equity=None if last else self.prices.equity(portfolio, step),
            cash=None if last else portfolio.cash, completed=not last, decided_at=_now(),
        )

    def _decide(self, ctx: StepContext) -> DecisionResult:
        if self._pool is None:
            return _guarded(lambda: self.decider.decide(ctx), ctx.step)
        future = self._pool.submit(self.decider.decide, ctx)
        deadline = time.monotonic() + self.settings.decision_timeout_seconds
        while True:
            limit = self._time_limit(deadline)
            try:
                wait = max(0.0, min(0.05, limit - time.monotonic()))
                return _guarded(partial(future.result, timeout=wait), ctx.step,
                                passes=(cf.TimeoutError,))
            except cf.TimeoutError:
                if time.monotonic() < limit:
                    continue
                future.cancel()
                why = "stop requested" if self.stop.requested else \
                    f"no decision within {self.settings.decision_timeout_seconds}s"
                return DecisionResult.hold(f"decision abandoned: {why}", outcome="timeout",
                                           error="timeout")

    def _time_limit(self, deadline: float) -> float:
        """The decision's deadline, brought forward by a stop."""
        if self.stop.requested and self.stop.received_at is not None:
            abandon = self.stop.received_at + self.settings.abandon_decision_seconds
            return min(deadline, abandon)
        return deadline

    def _count_spend(self, result: DecisionResult) -> None:
        tokens = result.tokens_in + result.tokens_out
        if self.guard is not None:
            self.guard.record(tokens, result.cost)
        if result.cost:
            telemetry.LLM_SPEND.labels(self.model.llm or "-", self.run.user_id).inc(
                float(result.cost))

    def _recent_trades(self) -> list[Trade]:
        """The newest trades, oldest first: one read of at most `recent_trades` rows, so
        a step reads as much at its millionth trade as at its first."""
        if not self.settings.recent_trades:
            return []
        return self.store.recent_trades(self.run.id, self.settings.recent_trades)[::-1]

    def _budget_check(self, tokens: int, cost: Decimal | None) -> str | None:
        """For the decider, before each model call: what the step used so far."""
        if self.guard is None:
            return None
        exhausted = self.guard.over(tokens, cost)
        return None if exhausted is None else exhausted.reason

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        close_decider = getattr(self.decider, "close", None)
        if callable(close_decider):
            close_decider()


def _guarded(decide: Callable[[], DecisionResult], step: int, *,
             passes: tuple[type[Exception], ...] = ()) -> DecisionResult:
    """The decider's answer; an error of its own is a HOLD that says so. DeciderFailed
    passes (it is not a HOLD: the run fails, runner.app), and so do `passes`."""
    try:
        return decide()
    except DeciderFailed:
        raise
    except passes:
        raise
    except Exception as exc:
        log.exception("decider failed at step %d", step)
        return DecisionResult.hold(f"decider error: {exc}", outcome="error",
                                   error=type(exc).__name__)


def _missed(result: DecisionResult, why: str) -> DecisionResult:
    """A decision done past its live deadline: nothing it asked for is traded; what it
    spent and said is kept."""
    said = f"; it said {result.action}" + (f": {result.reasoning}" if result.reasoning else "")
    return dataclasses.replace(result, action="missed", orders=[], cancels=[],
                               close_all=False, outcome="missed", error="deadline",
                               reasoning=why + said)


def _with_tool_trades(result: DecisionResult, tool_trades: list[Trade]) -> DecisionResult:
    """A decider abandoned after trading through its tools: the ledger keeps those
    trades (a replay takes them from there), and its record says so."""
    if len(tool_trades) == result.traded_by_tools:
        return result
    sides = ",".join(sorted({t.side.value for t in tool_trades}))
    return dataclasses.replace(
        result, action=sides or result.action, traded_by_tools=len(tool_trades),
        reasoning=f"{result.reasoning} ({len(tool_trades)} trade(s) made through "
                  "tools before that)")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
