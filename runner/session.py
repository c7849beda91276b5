"""The session loop: play one run from its checkpoint to the end (or a stop).

Per step: decide (bars up to this step only), record the decision, execute its orders
through the TradingService, checkpoint, publish events. A decision is recorded before
its orders trade, so a runner restarted after a crash re-executes that same decision
(trades are idempotent by (run, step, seq)) instead of deciding the step again.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from core import performance
from core.eventlog import EventType
from core.records import Decision, Model, Order, Portfolio, Run, Trade
from core.spec import FillRule
from core.status import RunStatus
from core.store import Store
from runner import telemetry
from runner.deciders import Decider, DecisionResult, StepContext
from runner.events import EventPublisher
from runner.marketdata import Bar, Timeline
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.trading import TradingService

log = logging.getLogger(__name__)


class Ending(Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"


@dataclass
class RunBroker:
    """Trades of one step of one run; seq numbers follow the order of submission."""

    trading: TradingService
    run_id: int
    step: int
    price_of: dict[str, Decimal]
    bar_time: Any
    seq: int = 0

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        price = self.price_of.get(order.symbol, Decimal(0))
        trade = self.trading.execute(self.run_id, self.step, self.seq, order, price=price,
                                     bar_time=self.bar_time, reasoning=reasoning)
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
                 stop: StopSignal, settings: RunnerSettings) -> None:
        self.store = store
        self.publisher = publisher
        self.run = run
        self.model = model
        self.decider = decider
        self.timeline = timeline
        self.bars = bars
        self.stop = stop
        self.settings = settings
        self.trading = TradingService(store, fee_per_trade=run.spec.fee_per_trade)
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="decider") \
            if decider.blocking else None
        self._next_status_check = 0.0

    # -- the loop --------------------------------------------------------------------
    def play(self) -> Ending:
        start = self.run.steps_done
        if start:
            log.info("resuming after checkpoint: step %d of %d", start, len(self.timeline))
        for step in range(start, len(self.timeline)):
            if self._should_stop():
                return Ending.STOPPED
            began = time.perf_counter()
            self._play_step(step)
            telemetry.STEP_DURATION.observe(time.perf_counter() - began)
            telemetry.STEPS.labels(self.run.spec.mode.value).inc()
            if self.settings.step_delay_seconds and self.stop.wait(
                    self.settings.step_delay_seconds):
                continue
        return Ending.COMPLETED

    def _play_step(self, step: int) -> None:
        run_id = self.run.id
        bar_time = self.timeline.times[step]
        broker = RunBroker(self.trading, run_id, step, self._fill_prices(step), bar_time)
        decision = self.store.get_decision(run_id, step)
        tool_trades: list[Trade] = []
        if decision is None and step == self.run.steps_done and self.run.attempts > 1:
            decision, tool_trades = self._interrupted_decision(step)
        if decision is None:
            decision, tool_trades = self._decide_and_record(step, broker)
        else:
            # Its orders replay from seq 0 and return the trades already made.
            log.info("step %d was decided before a restart; executing that decision", step)
        self.publisher.publish(EventType.DECISION, _decision_event(decision))
        trades = tool_trades + [broker.submit(order, decision.reasoning)
                                for order in decision.orders]
        for trade in trades:
            telemetry.TRADES.labels(trade.status.value).inc()
            self.publisher.publish(EventType.TRADE, _trade_event(trade))
        portfolio = self.store.get_portfolio(run_id)
        equity = portfolio.equity({s: b[step].close for s, b in self.bars.items()})
        self.store.complete_step(run_id, step, equity=equity, cash=portfolio.cash)
        progress = {"step": step + 1, "total": len(self.timeline), "equity": str(equity),
                    "cash": str(portfolio.cash), "bar_time": bar_time.isoformat(),
                    "last_action": decision.action}
        self.publisher.progress(progress)
        self.publisher.publish(EventType.PROGRESS, progress)

    def _decide_and_record(self, step: int, broker: RunBroker) -> tuple[Decision, list[Trade]]:
        """Decide, then record the decision; also returns the trades its tools made."""
        tools_broker = DeciderBroker(broker)
        ctx = StepContext(
            run=self.run, model=self.model, step=step, steps_total=len(self.timeline),
            bar_time=self.timeline.times[step],
            history={s: b[: step + 1] for s, b in self.bars.items()},
            portfolio=self.store.get_portfolio(self.run.id),
            recent_trades=self.store.list_trades(self.run.id)[-self.settings.recent_trades:]
            if self.settings.recent_trades else [],
            broker=tools_broker, stop_requested=lambda: self.stop.requested,
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
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=ctx.bar_time, action=result.action,
            orders=result.orders, reasoning=result.reasoning, outcome=result.outcome,
            latency_ms=round(latency * 1000, 3), tokens_in=result.tokens_in,
            tokens_out=result.tokens_out, cost=result.cost, tool_calls=result.tool_calls,
            error=result.error,
        )), tool_trades

    def _interrupted_decision(self, step: int) -> tuple[Decision | None, list[Trade]]:
        """A decider that trades through tools trades before its decision is recorded: a
        runner that died in between left trades and no decision. The step is not decided
        again (it would trade twice); the record is rebuilt from the ledger."""
        made = [t for t in self.store.list_trades(self.run.id, limit=10**6) if t.step == step]
        if not made:
            return None, []
        log.info("step %d traded through tools before a restart; not deciding it again", step)
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=self.timeline.times[step],
            action=",".join(sorted({t.side.value for t in made})), orders=[],
            reasoning=f"decided before a restart: its {len(made)} trade(s) through tools stand",
            outcome="trade", latency_ms=0.0)), made

    def _decide(self, ctx: StepContext) -> DecisionResult:
        if self._pool is None:
            try:
                return self.decider.decide(ctx)
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
            except Exception as exc:
                log.exception("decider failed at step %d", ctx.step)
                return DecisionResult.hold(f"decider error: {exc}", outcome="error",
                                           error=type(exc).__name__)

    def _fill_prices(self, step: int) -> dict[str, Decimal]:
        """Next bar's open by default; the close on the last step or when configured."""
        last = step + 1 >= len(self.timeline)
        if self.run.spec.fill is FillRule.CLOSE or last:
            return {s: b[step].close for s, b in self.bars.items()}
        return {s: b[step + 1].open for s, b in self.bars.items()}

    def _should_stop(self) -> bool:
        if self.stop.requested:
            return True
        now = time.monotonic()
        if now >= self._next_status_check:
            self._next_status_check = now + self.settings.status_check_seconds
            status = self.store.get_run(self.run.id).status
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
        run_id, spec = self.run.id, self.run.spec
        decisions = [d for d in self.store.list_decisions(run_id, limit=10**6) if d.completed]
        equity = [d.equity for d in decisions if d.equity is not None]
        trades = self.store.list_trades(run_id, limit=10**6)
        summary = performance.summarize(spec.initial_cash, equity, trades,
                                        self.timeline.periods_per_year)
        steps = len(equity)
        summary.update({
            "ending": ending.value,
            "steps_done": steps,
            "steps_total": len(self.timeline),
            "decider": self.decider.name,
            "tokens_in": sum(d.tokens_in for d in decisions),
            "tokens_out": sum(d.tokens_out for d in decisions),
            "cost": str(sum((d.cost for d in decisions if d.cost is not None), Decimal(0))),
            "decisions_by_outcome": _count(d.outcome for d in decisions),
            "benchmark": self._buy_and_hold(steps),
        })
        return summary

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


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _decision_event(d: Decision) -> dict[str, Any]:
    return {"step": d.step, "bar_time": d.bar_time.isoformat(), "action": d.action,
            "orders": [o.to_json() for o in d.orders], "reasoning": d.reasoning,
            "outcome": d.outcome, "latency_ms": d.latency_ms, "error": d.error,
            "tokens_in": d.tokens_in, "tokens_out": d.tokens_out,
            "tool_calls": [c.get("name") for c in d.tool_calls]}


def _trade_event(t: Trade) -> dict[str, Any]:
    return {"step": t.step, "seq": t.seq, "side": t.side.value, "symbol": t.symbol,
            "quantity": str(t.quantity), "price": str(t.price), "status": t.status.value,
            "reason": t.reason, "cash_after": str(t.cash_after)}
