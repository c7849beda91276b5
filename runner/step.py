"""One step of a run: settle its bar, decide, execute, record.

1. Settle: resting orders that may fill on the step's bar, and the margin of shorts
   at its close (runner.trading.settle_bar).
2. Decide, or take the decision recorded before (runner.replay): a decision is
   recorded before its orders trade, so a step played again executes that same
   decision (its trades are idempotent by (run, step, seq)) instead of deciding again.
3. Execute what the decision says: cancels, the close-all, its orders; on the last
   step, end the book (flat at the close if asked; open orders expire or are
   cancelled).
4. Record: checkpoint the step (equity, cash) and publish its events and progress. A
   decision that does nothing is recorded here, with its checkpoint; on SQLite the
   record and the events are one transaction (Store.commit_together).

This runner alone writes the run's ledger (fencing), so what it knows of the book and
the portfolio it keeps from step to step; only a step it may have played before
(`maybe_played`) reads them from the ledger again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.eventlog import EventType
from core.eventlog.payloads import decision_data, order_data, step_progress, trade_data
from core.orders import FLAT_AT_CLOSE_SEQ
from core.records import Decision, OrderOrigin, OrderRecord, Portfolio, Run, Trade
from core.risk import RiskGuard
from core.store import Store
from runner import telemetry
from runner.broker import StepOrders
from runner.deciding import Deciding
from runner.events import EventPublisher
from runner.prices import RunPrices
from runner.replay import Recorded, recorded_decision, step_changes
from runner.trading import JournalItem, OrderChange, TradingService

log = logging.getLogger(__name__)

EventData = tuple[EventType, dict[str, Any]]


class Book:
    """The run's open orders as this runner knows them: unknown until read from the
    ledger (at the first step it plays, and again after a step it may have played
    before), then kept up to date from the changes this runner makes."""

    def __init__(self) -> None:
        self._orders: dict[int, OrderRecord] | None = None

    def forget(self) -> None:
        self._orders = None

    def read(self, store: Store, run_id: int) -> list[OrderRecord]:
        if self._orders is None:
            self._orders = {o.id: o for o in store.open_orders(run_id)}
        return list(self._orders.values())

    def known(self) -> list[OrderRecord]:
        """The open orders as known (none when unknown)."""
        return [] if self._orders is None else list(self._orders.values())

    def may_hold_orders(self) -> bool:
        """Not known to be empty."""
        return self._orders is None or bool(self._orders)

    def track(self, items: Iterable[JournalItem]) -> None:
        if self._orders is None:
            return
        for item in items:
            if isinstance(item, OrderChange):
                if item.order.is_open:
                    self._orders[item.order.id] = item.order
                else:
                    self._orders.pop(item.order.id, None)


@dataclass
class StepLog:
    """What a step did, in the order it happened: its events and its metrics."""

    settled: Sequence[JournalItem]  # on the step's bar, before the decision
    decision: Decision
    journal: Sequence[JournalItem]  # what the decision did, and the end of the run
    # Made through tools by an attempt that died before recording its decision.
    tool_trades: list[Trade] = field(default_factory=list)

    def from_ledger(self, changes: list[JournalItem]) -> StepLog:
        """A step played before: its trades, and every order change of the step, this
        attempt's or an earlier one's (`changes`, read from the ledger)."""
        return StepLog(_trades(self.settled), self.decision,
                       [*_trades(self.journal), *changes], self.tool_trades)

    def traded_after_settling(self) -> bool:
        return bool(_trades(self.journal) or self.tool_trades)

    def events(self) -> list[EventData]:
        return [*map(journal_event, self.settled),
                (EventType.DECISION, decision_data(self.decision)),
                *((EventType.TRADE, trade_data(t)) for t in self.tool_trades),
                *map(journal_event, self.journal)]

    def count(self) -> None:
        for trade in [*_trades([*self.settled, *self.journal]), *self.tool_trades]:
            telemetry.TRADES.labels(trade.status.value).inc()
        for item in (*self.settled, *self.journal):
            if isinstance(item, OrderChange):
                telemetry.ORDER_EVENTS.labels(item.event.kind.value).inc()


class StepPlayer:
    def __init__(self, *, store: Store, run: Run, trading: TradingService,
                 prices: RunPrices, deciding: Deciding, publisher: EventPublisher,
                 attempt: int, risk: RiskGuard | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store
        self.run = run
        self.trading = trading
        self.prices = prices
        self.deciding = deciding
        self.publisher = publisher
        self.attempt = attempt
        self.book = Book()
        # The session (date) of each step's bar: when day orders expire.
        self._sessions = [t.date() for t in prices.timeline.times]
        self._portfolio: Portfolio | None = None  # as of the last step played
        self.risk = risk  # checks every order the decider places (runner.broker)
        self._equity: Decimal | None = None  # at the close of the last step played
        self.clock = clock  # a live run's: its progress carries the clock and the lag

    def play(self, step: int, *, maybe_played: bool, missed: str | None = None) -> None:
        """`maybe_played`: the step may have a decision already (the first step after a
        checkpoint, or one played again after an outage); no other step can. `missed`:
        no decision is asked for (a live run's late bar), it is recorded as missed with
        this reason; its bar still settles the book."""
        if maybe_played:  # the ledger may hold orders this runner has not seen
            self.book.forget()
        portfolio = self._portfolio_before(maybe_played)
        settled, settled_before = self._settle(step, portfolio)
        if _trades(settled):
            portfolio = self._read_portfolio()
        orders = self._orders_of(step)
        earlier = self._recorded(step) if maybe_played else None
        decision = earlier.decision if earlier else self._decide(step, orders, portfolio,
                                                                 missed)
        # A fresh decision that does nothing is recorded with its checkpoint and the
        # step's events (_record); any other before its orders trade.
        holds = earlier is None and decision.completed
        if earlier is None and not holds:
            decision = self.store.record_decision(decision, attempt=self.attempt)
        played = StepLog(settled, decision, self._act(step, orders, decision),
                         earlier.tool_trades if earlier else [])
        if earlier is not None or settled_before:
            played = played.from_ledger(step_changes(self.store, self.run.id, step))
        played.count()
        if played.traded_after_settling():
            portfolio = self._read_portfolio()
        self._portfolio = portfolio
        self._record(step, played, portfolio, holds=holds)

    def equity_before(self, step: int) -> Decimal:
        """The equity before `step` is played: at the close of the step before it (read
        from the ledger when this runner has played none yet)."""
        if self._equity is None:
            self._equity = self.prices.equity(self._read_portfolio(), max(step - 1, 0))
        return self._equity

    # -- the parts of a step -------------------------------------------------------
    def _portfolio_before(self, maybe_played: bool) -> Portfolio:
        """The last step's portfolio, unless this step may have traded before."""
        if self._portfolio is not None and not maybe_played:
            return self._portfolio
        return self._read_portfolio()

    def _settle(self, step: int, portfolio: Portfolio) -> tuple[list[JournalItem], bool]:
        """Settle the step's bar when something may happen on it: an order in the book
        that may fill on it, or a short to check against the maintenance margin.
        Returns what changed, and whether an earlier attempt had settled it already."""
        due = any(o.active_from <= step for o in self.book.read(self.store, self.run.id))
        shorts = any(q < 0 for q in portfolio.holdings.values())
        if not due and not shorts:
            return [], False
        done = self.trading.settle_bar(self.run.id, step, self.prices.at(step),
                                       bar_time=self.prices.time(step),
                                       sessions=self._sessions,
                                       symbols=self.run.spec.symbols)
        return self._take_journal(), done is None

    def _orders_of(self, step: int) -> StepOrders:
        return StepOrders(self.trading, self.run.id, step, self.prices.fill_prices(step),
                          self.prices.time(step),
                          self.prices.time(self.prices.fill_step(step)),
                          symbols=self.run.spec.symbols, risk=self.risk)

    def _recorded(self, step: int) -> Recorded | None:
        earlier = recorded_decision(self.store, self.run, step, self.prices,
                                    attempt=self.attempt)
        if earlier is not None:
            # Its orders replay from seq 0 and return the trades already made.
            log.info("step %d was decided before a restart; executing that decision", step)
        return earlier

    def _decide(self, step: int, orders: StepOrders, portfolio: Portfolio,
                missed: str | None = None) -> Decision:
        # On the last step the book ends after the decision: not with it.
        ends = self.prices.is_last(step) and (self.run.spec.flat_at_close
                                              or self.book.may_hold_orders())
        if missed is not None:
            return self.deciding.missed(step, portfolio, missed, last=ends)
        return self.deciding.decide(step, orders, portfolio, self.book.known(), last=ends)

    def _act(self, step: int, orders: StepOrders, decision: Decision) -> list[JournalItem]:
        """What a decision says, in its order: cancels, the close-all, then its orders;
        after the last step's decision, the end of the book."""
        for order_id in decision.cancels:
            orders.cancel(order_id, decision.reasoning)
        if decision.close_all:
            orders.close_all(decision.reasoning)
        for order in decision.orders:
            orders.place(order, decision.reasoning)
        journal = self._take_journal()
        if self.prices.is_last(step):
            self._end_of_run(step)
            journal += self._take_journal()
        return journal

    def _end_of_run(self, step: int) -> None:
        """After the last bar's decision: flat at its close if the run asks, then the
        open orders end (day orders expire, GTC ones are cancelled)."""
        bar_time = self.prices.time(step)
        if self.run.spec.flat_at_close:
            self.trading.close_all(self.run.id, step, FLAT_AT_CLOSE_SEQ,
                                   self.prices.closes(step), bar_time=bar_time,
                                   filled_at=bar_time,
                                   reasoning="flat at the close (flat_at_close)",
                                   symbols=self.run.spec.symbols,
                                   origin=OrderOrigin.FLAT_AT_CLOSE)
        if self.book.may_hold_orders():
            self.trading.end_orders(self.run.id, step, bar_time=bar_time)

    def _record(self, step: int, played: StepLog, portfolio: Portfolio, *,
                holds: bool) -> None:
        """Checkpoint the step (`holds`: with its decision, recorded now), then publish
        its events and progress in one round trip; on SQLite all of it one commit."""
        equity = self.prices.equity(portfolio, step)
        self._equity = equity
        progress = step_progress(step=step + 1, total=len(self.prices), equity=equity,
                                 cash=portfolio.cash, bar_time=self.prices.time(step),
                                 last_action=played.decision.action,
                                 wall_time=self.clock() if self.clock else None)
        with self.store.commit_together():
            if holds:
                self.store.record_decision(played.decision, attempt=self.attempt)
            else:
                self.store.complete_step(self.run.id, step, equity=equity,
                                         cash=portfolio.cash, attempt=self.attempt)
            self.publisher.publish_step([*played.events(), (EventType.PROGRESS, progress)],
                                        progress)

    def _take_journal(self) -> list[JournalItem]:
        """What the trading service did since the last look, tracked in the book."""
        items = self.trading.take_journal()
        self.book.track(items)
        return items

    def _read_portfolio(self) -> Portfolio:
        return self.store.get_portfolio(self.run.id)


def journal_event(item: JournalItem) -> EventData:
    if isinstance(item, OrderChange):
        return EventType.ORDER, order_data(item.event, item.order)
    return EventType.TRADE, trade_data(item)


def _trades(items: Sequence[JournalItem]) -> list[Trade]:
    return [i for i in items if isinstance(i, Trade)]

