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
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from core import margin, performance
from core.bars import Bar
from core.errors import StoreUnavailable
from core.eventlog import EventType
from core.lifecycle import data_label, run_result
from core.orders import ENGINE_SEQ, FLAT_AT_CLOSE_SEQ
from core.records import (
    Decision,
    Model,
    Order,
    OrderOrigin,
    OrderRecord,
    OrderType,
    Portfolio,
    Refusal,
    Run,
    Trade,
)
from core.spec import FillRule
from core.status import RunStatus
from core.store import Store
from runner import telemetry
from runner.budget import SpendGuard
from runner.deciders import Decider, DeciderFailed, DecisionResult, StepContext
from runner.deciders.base import LazyTrades
from runner.events import EventPublisher
from runner.marketdata import Timeline
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.trading import JournalItem, OrderChange, TradingService

log = logging.getLogger(__name__)


class Ending(Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"  # never returned by play(): the decider failed (DeciderFailed)


@dataclass
class RunBroker:
    """Orders of one step of one run; seq numbers follow the order of submission (a
    close-all takes one per symbol of the run, whatever it holds, so a replay numbers
    the step's orders the same way)."""

    trading: TradingService
    run_id: int
    step: int
    price_of: dict[str, Decimal]
    bar_time: dt.datetime  # the decision bar
    filled_at: dt.datetime  # the bar whose price `price_of` holds
    seq: int = 0
    symbols: Sequence[str] = ()  # the run's symbols (default: the priced ones, sorted)

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        if order.type is not OrderType.MARKET:
            raise ValueError(f"a {order.type.value} order rests: place() it")
        price = self.price_of.get(order.symbol, Decimal(0))
        trade = self.trading.execute(self.run_id, self.step, self.seq, order, price=price,
                                     bar_time=self.bar_time, filled_at=self.filled_at,
                                     reasoning=reasoning, marks=self.price_of)
        self.seq += 1
        return trade

    def place(self, order: Order, reasoning: str | None = None) -> OrderRecord | Trade:
        if order.type is OrderType.MARKET:
            return self.submit(order, reasoning)
        unknown = None if order.symbol in self.price_of else \
            f"{order.symbol} is not a symbol of this run"
        placed = self.trading.place(self.run_id, self.step, self.seq, order,
                                    bar_time=self.bar_time, reasoning=reasoning,
                                    refusal=unknown)
        self.seq += 1
        return placed

    def cancel(self, order_id: int, reasoning: str | None = None) -> OrderRecord | Refusal:
        why = "cancelled by the decider" + (f": {reasoning}" if reasoning else "")
        return self.trading.cancel(self.run_id, order_id, step=self.step,
                                   bar_time=self.bar_time, reason=why[:500])

    def open_orders(self) -> list[OrderRecord]:
        return self.trading.store.open_orders(self.run_id)

    def close_all(self, reasoning: str | None = None) -> list[Trade]:
        names = list(self.symbols) or sorted(self.price_of)
        trades = self.trading.close_all(self.run_id, self.step, self.seq, self.price_of,
                                        bar_time=self.bar_time, filled_at=self.filled_at,
                                        reasoning=reasoning, symbols=names)
        self.seq += len(names)
        return trades

    def portfolio(self) -> Portfolio:
        return self.trading.store.get_portfolio(self.run_id)


class StepClosed(RuntimeError):
    """A decider traded after its step was over (it was abandoned): refused."""


@dataclass
class DeciderBroker:
    """The broker a decider's tools trade through, closed when its step is decided.

    A decider abandoned on a timeout or a stop may still be running in its thread;
    once closed, its late orders (and cancels, close-alls) raise instead of acting on
    a step the loop has left. The lock makes "close" wait for a call already in flight,
    so the trades this returns are all the decider made, and `actions` counts every
    change it made to the ledger (orders placed, cancels, close-alls).
    """

    broker: RunBroker
    trades: list[Trade] = field(default_factory=list)
    actions: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check_open(self) -> None:
        if self.closed:
            raise StepClosed(f"step {self.broker.step} is over; the order was not sent")

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        with self._lock:
            self._check_open()
            trade = self.broker.submit(order, reasoning)
            self.trades.append(trade)
            self.actions += 1
            return trade

    def place(self, order: Order, reasoning: str | None = None) -> OrderRecord | Trade:
        with self._lock:
            self._check_open()
            placed = self.broker.place(order, reasoning)
            if isinstance(placed, Trade):
                self.trades.append(placed)
            self.actions += 1
            return placed

    def cancel(self, order_id: int, reasoning: str | None = None) -> OrderRecord | Refusal:
        with self._lock:
            self._check_open()
            done = self.broker.cancel(order_id, reasoning)
            if not isinstance(done, Refusal):
                self.actions += 1
            return done

    def open_orders(self) -> list[OrderRecord]:
        return self.broker.open_orders()

    def close_all(self, reasoning: str | None = None) -> list[Trade]:
        with self._lock:
            self._check_open()
            trades = self.broker.close_all(reasoning)
            self.trades.extend(trades)
            self.actions += 1
            return trades

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
                                      attempt=self.attempt,
                                      initial_margin=run.spec.initial_margin,
                                      maintenance_margin=run.spec.maintenance_margin)
        # The run's open orders as this runner knows them: None until read from the
        # ledger (at the first step it plays, and again after a replayed step).
        self._open: dict[int, OrderRecord] | None = None
        # The session (date) of each step's bar: when day orders expire.
        self._sessions = [t.date() for t in timeline.times]
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
        runner alone writes the run's decisions (fencing), so it skips that read.

        A step: settle its bar (resting orders, the margin at its close), decide, do what
        the decision says (cancels, close-all, orders), and on the last step end the
        book (flat at the close if asked; open orders expire or are cancelled)."""
        run_id = self.run.id
        bar_time = self.timeline.times[step]
        last = step + 1 == len(self.timeline)
        if recorded_before:  # the ledger may hold orders this runner has not seen
            self._open = None
        # The last step's portfolio, unless this step may have traded before (this runner
        # alone writes the run's ledger: fencing); read again after any trade.
        portfolio = self._portfolio if self._portfolio is not None and not recorded_before \
            else self.store.get_portfolio(run_id)
        settled, replayed = self._settle(step, portfolio)
        if any(isinstance(item, Trade) for item in settled):
            portfolio = self.store.get_portfolio(run_id)
        broker = RunBroker(self.trading, run_id, step, self._fill_prices(step), bar_time,
                           self.timeline.times[self._fill_step(step)],
                           symbols=self.run.spec.symbols)
        decision = self.store.get_decision(run_id, step) if recorded_before else None
        tool_trades: list[Trade] = []
        if decision is None and step == self.run.steps_done and self.run.attempts > 1:
            decision, tool_trades = self._interrupted_decision(step)
        replayed = replayed or decision is not None
        checkpointed = False
        if decision is None:
            # On the last step the book ends after the decision: not with it.
            ends = last and (self.run.spec.flat_at_close or self._open != {})
            decision = self._decide_and_record(step, broker, portfolio, last=ends)
            checkpointed = decision.completed  # a hold: recorded with its checkpoint
        else:
            # Its orders replay from seq 0 and return the trades already made.
            log.info("step %d was decided before a restart; executing that decision", step)
        self._execute(broker, decision)
        journal = self.trading.take_journal()
        self._track(journal)
        if last:
            self._end_of_run(step)
            ended = self.trading.take_journal()
            self._track(ended)
            journal += ended
        if replayed:  # every order change of the step, this attempt's or an earlier one's
            settled = [i for i in settled if isinstance(i, Trade)]
            journal = [*(i for i in journal if isinstance(i, Trade)),
                       *self._step_changes(step)]
        events = [_event(item) for item in settled]
        events.append((EventType.DECISION, _decision_event(decision)))
        events += [(EventType.TRADE, _trade_event(t)) for t in tool_trades]
        events += [_event(item) for item in journal]
        trades = [i for i in (*settled, *journal) if isinstance(i, Trade)] + tool_trades
        for trade in trades:
            telemetry.TRADES.labels(trade.status.value).inc()
        for item in (*settled, *journal):
            if isinstance(item, OrderChange):
                telemetry.ORDER_EVENTS.labels(item.event.kind.value).inc()
        if any(isinstance(i, Trade) for i in journal) or tool_trades:
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

    def _settle(self, step: int, portfolio: Portfolio) -> tuple[list[JournalItem], bool]:
        """Settle the step's bar when something may happen on it: an order in the book
        that may fill on it, or a short to check against the maintenance margin. The
        book is the ledger's, read once per runner (and after a replayed step), then
        kept up to date from what this runner changed. Returns what changed, and
        whether an earlier attempt had settled the bar already."""
        if self._open is None:
            self._open = {o.id: o for o in self.store.open_orders(self.run.id)}
        due = any(o.active_from <= step for o in self._open.values())
        shorts = any(q < 0 for q in portfolio.holdings.values())
        if not due and not shorts:
            return [], False
        done = self.trading.settle_bar(
            self.run.id, step, {s: b[step] for s, b in self.bars.items()},
            bar_time=self.timeline.times[step], sessions=self._sessions,
            symbols=self.run.spec.symbols)
        settled = self.trading.take_journal()
        self._track(settled)
        return settled, done is None

    def _execute(self, broker: RunBroker, decision: Decision) -> None:
        """What a decision says, in its order: cancels, the close-all, then its orders."""
        for order_id in decision.cancels:
            broker.cancel(order_id, decision.reasoning)
        if decision.close_all:
            broker.close_all(decision.reasoning)
        for order in decision.orders:
            broker.place(order, decision.reasoning)

    def _end_of_run(self, step: int) -> None:
        """After the last bar's decision: flat at its close if the run asks, then the
        open orders end (day orders expire, GTC ones are cancelled)."""
        bar_time = self.timeline.times[step]
        if self.run.spec.flat_at_close:
            closes = {s: b[step].close for s, b in self.bars.items()}
            self.trading.close_all(self.run.id, step, FLAT_AT_CLOSE_SEQ, closes,
                                   bar_time=bar_time, filled_at=bar_time,
                                   reasoning="flat at the close (flat_at_close)",
                                   symbols=self.run.spec.symbols,
                                   origin=OrderOrigin.FLAT_AT_CLOSE)
        if self._open is None or self._open:  # the book, as known, is not empty
            self.trading.end_orders(self.run.id, step, bar_time=bar_time)

    def _track(self, items: Sequence[JournalItem]) -> None:
        """Keep the book (open orders) up to date from the changes this runner made."""
        if self._open is None:
            return
        for item in items:
            if isinstance(item, OrderChange):
                if item.order.is_open:
                    self._open[item.order.id] = item.order
                else:
                    self._open.pop(item.order.id, None)

    def _step_changes(self, step: int) -> list[JournalItem]:
        """The ledger's order changes made while `step` was played (by any attempt)."""
        events = self.store.list_order_events(self.run.id, step=step, limit=10_000)
        orders = {o.id: o for o in self.store.list_orders(
            self.run.id, ids={e.order_id for e in events}, limit=10_000)}
        return [OrderChange(e, orders[e.order_id]) for e in events if e.order_id in orders]

    def _equity(self, portfolio: Portfolio, step: int) -> Decimal:
        return portfolio.equity({s: b[step].close for s, b in self.bars.items()})

    def _decide_and_record(self, step: int, broker: RunBroker, portfolio: Portfolio, *,
                           last: bool = False) -> Decision:
        """Decide, then record the decision (what its tools did is in the trading
        journal). A decision that does nothing is recorded with its step's checkpoint
        (completed, equity, cash) in one transaction, unless `last`: the run's last step,
        whose open orders (or positions, flat at the close) end after it."""
        tools_broker = DeciderBroker(broker)
        ctx = StepContext(
            run=self.run, model=self.model, step=step, steps_total=len(self.timeline),
            bar_time=self.timeline.times[step],
            history={s: b[: step + 1] for s, b in self.bars.items()},
            portfolio=portfolio,
            recent_trades=LazyTrades(self._recent_trades),
            broker=tools_broker, stop_requested=lambda: self.stop.requested,
            over_budget=self._budget_check,
            open_orders=[] if self._open is None else list(self._open.values()),
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
        holds = not (result.orders or result.cancels or result.close_all
                     or tools_broker.actions or last)
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=ctx.bar_time, action=result.action,
            orders=result.orders, reasoning=result.reasoning, outcome=result.outcome,
            latency_ms=round(latency * 1000, 3), tokens_in=result.tokens_in,
            tokens_out=result.tokens_out, cost=result.cost, tool_calls=result.tool_calls,
            error=result.error, tokens_cached=result.tokens_cached,
            equity=self._equity(portfolio, step) if holds else None,
            cash=portfolio.cash if holds else None, completed=holds,
            cancels=list(result.cancels), close_all=result.close_all,
        ), attempt=self.attempt)

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
        """A decider that acts through tools acts before its decision is recorded: a
        runner that died in between left orders (and trades) and no decision. The step
        is not decided again (it would act twice); the record is rebuilt from the
        ledger: the decider's orders of the step (trades of a ledger from before orders
        were recorded count too)."""
        made = [t for t in self.store.step_trades(self.run.id, step) if t.seq < ENGINE_SEQ]
        placed = self.store.step_orders(self.run.id, step)
        if not made and not placed:
            return None, []
        log.info("step %d acted through tools before a restart; not deciding it again", step)
        sides = {o.side.value for o in placed} | {t.side.value for t in made}
        return self.store.record_decision(Decision(
            run_id=self.run.id, step=step, bar_time=self.timeline.times[step],
            action=",".join(sorted(sides)), orders=[],
            reasoning=f"decided before a restart: its {len(made)} trade(s) and "
                      f"{len(placed)} order(s) through tools stand",
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
        if steps:  # what is short at the last close played (zero without shorts)
            closes = {s: b[steps - 1].close for s, b in self.bars.items()}
            shorts = margin.short_value(self.store.get_portfolio(self.run.id), closes)
            result["final_short_value"] = str(shorts.quantize(performance.Q))
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


def _event(item: JournalItem) -> tuple[EventType, dict[str, Any]]:
    if isinstance(item, OrderChange):
        return EventType.ORDER, item.to_json()
    return EventType.TRADE, _trade_event(item)


def _decision_event(d: Decision) -> dict[str, Any]:
    return {"step": d.step, "bar_time": d.bar_time.isoformat(), "action": d.action,
            "orders": [o.to_json() for o in d.orders], "cancels": list(d.cancels),
            "close_all": d.close_all, "reasoning": d.reasoning,
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
            "cash_after": str(t.cash_after), "order_id": t.order_id}
