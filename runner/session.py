"""The session loop: play one run from its checkpoint to the end (or a stop).

Per step: decide (bars up to this step only), record the decision, execute its orders
through the TradingService, checkpoint, publish events. A decision is recorded before
its orders trade, so a runner restarted after a crash re-executes that same decision
(trades are idempotent by (run, step, seq)) instead of deciding the step again.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from core import performance
from core.errors import StoreUnavailable
from core.eventlog import EventType
from core.lifecycle import data_label, run_result
from core.records import Decision, Model, Order, Portfolio, Run, Trade
from core.spec import FillRule
from core.status import RunStatus
from core.store import Store
from runner import telemetry
from runner.budget import SpendGuard
from runner.deciders import Decider, DeciderFailed, DecisionResult, StepContext
from runner.deciders.base import LazyTrades
from runner.events import EventPublisher
from runner.marketdata import Bar, Timeline
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.trading import TradingService

log = logging.getLogger(__name__)


class Ending(Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"  # never returned by play(): the decider failed (DeciderFailed)


@dataclass
class RunBroker:
    """Trades of one step of one run; seq numbers follow the order of submission."""

    trading: TradingService
    run_id: int
    step: int
    price_of: dict[str, Decimal]
    bar_time: dt.datetime  # the decision bar
    filled_at: dt.datetime  # the bar whose price `price_of` holds
    seq: int = 0

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        price = self.price_of.get(order.symbol, Decimal(0))
        trade = self.trading.execute(self.run_id, self.step, self.seq, order, price=price,
                                     bar_time=self.bar_time, filled_at=self.filled_at,
                                     reasoning=reasoning)
        self.seq += 1
        return trade

    def portfolio(self) -> Portfolio:
        return self.trading.store.get_portfolio(self.run_id)


class StepClosed(RuntimeError):
    """A decider traded after its step was over (it was abandoned): refused."""


@dataclass
class DeciderBroker:
    """The broker a decider's tools trade through, closed when its step is decided.

    A decider abandoned on a timeout or a stop may still be running in its thread;
    once closed, its late orders raise instead of trading into a step the loop has
    left. The lock makes "close" wait for an order already in flight, so the trades
    this returns are all the decider made.
    """

    broker: RunBroker
    trades: list[Trade] = field(default_factory=list)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        with self._lock:
            if self.closed:
                raise StepClosed(f"step {self.broker.step} is over; the order was not sent")
            trade = self.broker.submit(order, reasoning)
            self.trades.append(trade)
            return trade

    def portfolio(self) -> Portfolio:
        return self.broker.portfolio()

    def close(self) -> list[Trade]:
        with self._lock:
            self.closed = True
            return list(self.trades)


class Session:
    def __init__(self, *, store: Store, publisher: EventPublisher, run: Run, model: Model,
                 decider: Decider, timeline: Timeline, bars: dict[str, list[Bar]],
                 stop: StopSignal, settings: RunnerSettings,
                 guard: SpendGuard | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.run = run
        self.model = model
        self.decider = decider
        self.timeline = timeline
        self.bars = bars
        self.stop = stop
        self.settings = settings
        self.guard = guard
        # Why the session ended the run itself (a budget): the stop's reason.
        self.stop_reason: str | None = None
        # Every ledger write carries this runner's attempt: once a newer runner has taken
        # the run over, the next write raises Superseded and this one bows out.
        self.attempt = run.attempts
        self.trading = TradingService(store, fee_per_trade=run.spec.fee_per_trade,
                                      attempt=self.attempt)
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="decider") \
            if decider.blocking else None
        self._next_status_check = 0.0
        self._portfolio: Portfolio | None = None  # as of the last step played

    # -- the loop --------------------------------------------------------------------
    def play(self) -> Ending:
        start = self.run.steps_done
        if start:
            log.info("resuming after checkpoint: step %d of %d", start, len(self.timeline))
        for step in range(start, len(self.timeline)):
            if self._should_stop() or self._over_budget():
                return Ending.STOPPED
            began = time.perf_counter()
            if not self._play_step_through_outages(step):
                return Ending.STOPPED
            telemetry.STEP_DURATION.observe(time.perf_counter() - began)
            telemetry.STEPS.labels(self.run.spec.mode.value).inc()
            if self.settings.step_delay_seconds and self.stop.wait(
                    self.settings.step_delay_seconds):
                continue
        return Ending.COMPLETED

    def _play_step_through_outages(self, step: int) -> bool:
        """Play a step; while the database does not answer, wait and play it again (its
        decision, trades and checkpoint are keyed by step, so nothing lands twice).
        False when a stop comes while waiting."""
        deadline = time.monotonic() + self.settings.store_outage_seconds
        delay, again = 0.5, False
        while True:
            try:
                self._play_step(step, recorded_before=again or step == self.run.steps_done)
                return True
            except StoreUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("step %d: %s; retrying in %.1fs", step, exc, delay)
                telemetry.STORE_OUTAGE_RETRIES.inc()
                if self.stop.wait(delay):
                    return False
                delay, again = min(delay * 2, 5.0), True

    def _play_step(self, step: int, *, recorded_before: bool = True) -> None:
        """`recorded_before`: the step may have a decision already (the first step after
        a checkpoint, or one played again after an outage); no other step can, as this
        runner alone writes the run's decisions (fencing), so it skips that read."""
        run_id = self.run.id
        bar_time = self.timeline.times[step]
        broker = RunBroker(self.trading, run_id, step, self._fill_prices(step), bar_time,
                           self.timeline.times[self._fill_step(step)])
        decision = self.store.get_decision(run_id, step) if recorded_before else None
        tool_trades: list[Trade] = []
        if decision is None and step == self.run.steps_done and self.run.attempts > 1:
            decision, tool_trades = self._interrupted_decision(step)
        # The last step's portfolio, unless this step may have traded before (this runner
        # alone writes the run's ledger: fencing); read again after any trade.
        portfolio = self._portfolio if self._portfolio is not None and not recorded_before \
            else self.store.get_portfolio(run_id)
        checkpointed = False
        if decision is None:
            decision, tool_trades = self._decide_and_record(step, broker, portfolio)
            checkpointed = decision.completed  # a hold: recorded with its checkpoint
        else:
            # Its orders replay from seq 0 and return the trades already made.
            log.info("step %d was decided before a restart; executing that decision", step)
        events = [(EventType.DECISION, _decision_event(decision))]
        trades = tool_trades + [broker.submit(order, decision.reasoning)
                                for order in decision.orders]
        for trade in trades:
            telemetry.TRADES.labels(trade.status.value).inc()
            events.append((EventType.TRADE, _trade_event(trade)))
        if trades:
            portfolio = self.store.get_portfolio(run_id)
        self._portfolio = portfolio
        equity = self._equity(portfolio, step)
        if not checkpointed:
            self.store.complete_step(run_id, step, equity=equity, cash=portfolio.cash,
                                     attempt=self.attempt)
        progress = {"step": step + 1, "total": len(self.timeline), "equity": str(equity),
                    "cash": str(portfolio.cash), "bar_time": bar_time.isoformat(),
                    "last_action": decision.action}
        events.append((EventType.PROGRESS, progress))
        self.publisher.publish_step(events, progress)

    def _equity(self, portfolio: Portfolio, step: int) -> Decimal:
        return portfolio.equity({s: b[step].close for s, b in self.bars.items()})

    def _decide_and_record(self, step: int, broker: RunBroker, portfolio: Portfolio
                           ) -> tuple[Decision, list[Trade]]:
        """Decide, then record the decision; also returns the trades its tools made. A
        decision that trades nothing is recorded with its step's checkpoint (completed,
        equity, cash) in one transaction."""
        tools_broker = DeciderBroker(broker)
        ctx = StepContext(
            run=self.run, model=self.model, step=step, steps_total=len(self.timeline),
            bar_time=self.timeline.times[step],
            history={s: b[: step + 1] for s, b in self.bars.items()},
            portfolio=portfolio,
            recent_trades=LazyTrades(self._recent_trades),
            broker=tools_broker, stop_requested=lambda: self.stop.requested,
            over_budget=self._budget_check,
        )
        began = time.perf_counter()
        result = self._decide(ctx)
        latency = time.perf_counter() - began
        tool_trades = tools_broker.close()
        if len(tool_trades) != result.traded_by_tools:
            # Abandoned after trading through its tools: the ledger keeps those trades
            # (a replay takes them from there); the record says so.
            sides = ",".join(sorted({t.side.value for t in tool_trades}))
            result = dataclasses.replace(
                result, action=sides or result.action, traded_by_tools=len(tool_trades),
                reasoning=f"{result.reasoning} ({len(tool_trades)} trade(s) made through "
                          "tools before that)")
        telemetry.DECISION_LATENCY.labels(self.decider.name).observe(latency)
        telemetry.DECISIONS.labels(result.outcome).inc()
        self._count_spend(result)
        holds = not result.orders and not tool_trades
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=ctx.bar_time, action=result.action,
            orders=result.orders, reasoning=result.reasoning, outcome=result.outcome,
            latency_ms=round(latency * 1000, 3), tokens_in=result.tokens_in,
            tokens_out=result.tokens_out, cost=result.cost, tool_calls=result.tool_calls,
            error=result.error, tokens_cached=result.tokens_cached,
            equity=self._equity(portfolio, step) if holds else None,
            cash=portfolio.cash if holds else None, completed=holds,
        ), attempt=self.attempt), tool_trades

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

    def _interrupted_decision(self, step: int) -> tuple[Decision | None, list[Trade]]:
        """A decider that trades through tools trades before its decision is recorded: a
        runner that died in between left trades and no decision. The step is not decided
        again (it would trade twice); the record is rebuilt from the ledger."""
        made = self.store.step_trades(self.run.id, step)
        if not made:
            return None, []
        log.info("step %d traded through tools before a restart; not deciding it again", step)
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=self.timeline.times[step],
            action=",".join(sorted({t.side.value for t in made})), orders=[],
            reasoning=f"decided before a restart: its {len(made)} trade(s) through tools stand",
            outcome="trade", latency_ms=0.0), attempt=self.attempt), made

    def _decide(self, ctx: StepContext) -> DecisionResult:
        if self._pool is None:
            try:
                return self.decider.decide(ctx)
            except DeciderFailed:
                raise  # not a HOLD: the run fails (runner.app)
            except Exception as exc:
                log.exception("decider failed at step %d", ctx.step)
                return DecisionResult.hold(f"decider error: {exc}", outcome="error",
                                           error=type(exc).__name__)
        future = self._pool.submit(self.decider.decide, ctx)
        deadline = time.monotonic() + self.settings.decision_timeout_seconds
        while True:
            limit = deadline
            if self.stop.requested and self.stop.received_at is not None:
                abandon = self.stop.received_at + self.settings.abandon_decision_seconds
                limit = min(deadline, abandon)
            try:
                return future.result(timeout=max(0.0, min(0.05, limit - time.monotonic())))
            except cf.TimeoutError:
                if time.monotonic() < limit:
                    continue
                future.cancel()
                why = "stop requested" if self.stop.requested else \
                    f"no decision within {self.settings.decision_timeout_seconds}s"
                return DecisionResult.hold(f"decision abandoned: {why}", outcome="timeout",
                                           error="timeout")
            except DeciderFailed:
                raise
            except Exception as exc:
                log.exception("decider failed at step %d", ctx.step)
                return DecisionResult.hold(f"decider error: {exc}", outcome="error",
                                           error=type(exc).__name__)

    def _fill_step(self, step: int) -> int:
        """The bar an order decided at `step` fills on: the next one by default; this one
        under the close rule, and on the last step, which has no next bar."""
        last = step + 1 >= len(self.timeline)
        return step if self.run.spec.fill is FillRule.CLOSE or last else step + 1

    def _fill_prices(self, step: int) -> dict[str, Decimal]:
        """The fill bar's open when it is the next bar; the decision bar's close else."""
        at = self._fill_step(step)
        if at == step:
            return {s: b[step].close for s, b in self.bars.items()}
        return {s: b[at].open for s, b in self.bars.items()}

    def _over_budget(self) -> bool:
        """At a step boundary: a limit reached by the steps so far ends the run here."""
        if self.guard is None:
            return False
        with contextlib.suppress(StoreUnavailable):  # the next boundary asks again
            self.guard.refresh()
        exhausted = self.guard.over()
        if exhausted is None:
            return False
        log.warning("stopping: %s", exhausted.reason)
        telemetry.BUDGET_STOPS.labels(exhausted.limit.value).inc()
        self.stop_reason = exhausted.reason
        return True

    def _budget_check(self, tokens: int, cost: Decimal | None) -> str | None:
        """For the decider, before each model call: what the step used so far."""
        if self.guard is None:
            return None
        exhausted = self.guard.over(tokens, cost)
        return None if exhausted is None else exhausted.reason

    def _should_stop(self) -> bool:
        if self.stop.requested:
            return True
        now = time.monotonic()
        if now >= self._next_status_check:
            self._next_status_check = now + self.settings.status_check_seconds
            try:
                status = self.store.get_run(self.run.id).status
            except StoreUnavailable:  # the step waits out the outage; ask again later
                return False
            if status is RunStatus.STOPPING or status.is_terminal:
                self.stop.request(f"run status is {status.value}")
                return True
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        close_decider = getattr(self.decider, "close", None)
        if callable(close_decider):
            close_decider()

    # -- the result ------------------------------------------------------------------
    def result(self, ending: Ending) -> dict[str, Any]:
        """The run's result from its ledger (core.lifecycle), with the buy-and-hold
        benchmark over the same completed steps, which only the runner has bars for."""
        steps = self.store.get_run(self.run.id).steps_done
        result = run_result(self.store, self.run, ending.value, decider=self.decider.name,
                            benchmark=self._buy_and_hold(steps), data=self.data_quality())
        if self.guard is not None:
            result["budget"] = self.guard.summary()
        return result

    def data_quality(self) -> dict[str, Any]:
        bars = [b for series in self.bars.values() for b in series]
        return {**data_label(self.run.spec), "bars": len(bars),
                "bars_filled": sum(1 for b in bars if b.filled)}

    def _buy_and_hold(self, steps: int) -> dict[str, Any] | None:
        if steps == 0:
            return None
        spec = self.run.spec
        per_symbol = spec.initial_cash / len(spec.symbols)
        entry = self._fill_prices(0)
        curves = [performance.buy_and_hold_curve(per_symbol, entry[symbol],
                                                 [b.close for b in bars[:steps]],
                                                 spec.fee_per_trade)
                  for symbol, bars in self.bars.items()]
        combined = [sum(values, Decimal(0)) for values in zip(*curves, strict=True)]
        bench = performance.summarize(spec.initial_cash, combined, [],
                                      self.timeline.periods_per_year)
        return {k: bench[k] for k in ("final_equity", "return_pct", "max_drawdown_pct",
                                      "sharpe")}


def _decision_event(d: Decision) -> dict[str, Any]:
    return {"step": d.step, "bar_time": d.bar_time.isoformat(), "action": d.action,
            "orders": [o.to_json() for o in d.orders], "reasoning": d.reasoning,
            "outcome": d.outcome, "latency_ms": d.latency_ms, "error": d.error,
            "tokens_in": d.tokens_in, "tokens_out": d.tokens_out,
            "tokens_cached": d.tokens_cached, "cost": None if d.cost is None else str(d.cost),
            "tool_calls": [c.get("name") for c in d.tool_calls]}


def _trade_event(t: Trade) -> dict[str, Any]:
    # bar_time: the bar it was decided on; filled_at: the bar its price is from (None
    # for a refusal).
    return {"step": t.step, "seq": t.seq, "bar_time": t.bar_time.isoformat(),
            "filled_at": None if t.filled_at is None else t.filled_at.isoformat(),
            "side": t.side.value, "symbol": t.symbol, "quantity": str(t.quantity),
            "price": str(t.price), "status": t.status.value, "reason": t.reason,
            "cash_after": str(t.cash_after)}
