"""The orders of one step, and the door a decider's tools trade through.

Two types, one job each:

- `StepOrders` keys the step's orders: each order takes the next seq number in the
  order it is sent (a close-all one per symbol of the run, whatever it holds), so a
  replayed step numbers its orders the same way and the ledger, keyed by (run, step,
  seq), returns what was done instead of doing it twice. The loop executes a recorded
  decision through it.
- `DeciderBroker` fences the decider: it is the `StepBroker` a decider acts through,
  closed once its step is decided. A decider abandoned on a timeout or a stop may
  still run in its thread; its late calls raise StepClosed instead of acting on a
  step the loop has left. It counts what the decider did, so the decision's record
  says so.

A run with a risk guard (core.risk, the spec's `risk`) has every order `place`d
through `StepOrders` checked before it goes to the ledger, at the step's bar time: one
the guard refuses is recorded refused with the guard's reason (an order, refused; it
never fills, so it has no trade), and that record is the decider's answer. A market
order is checked at its fill price, a resting one at its limit price (a stop at its
stop price). A replayed step answers what the ledger holds at the order's key, whatever
the guard (which a new runner starts afresh) would say now. A close-all and the
engine's own orders only reduce positions: the guard never refuses those. `submit`,
the raw market path that no decider takes (the tools and the loop `place`), is not
checked: a refusal there would have to be a refused trade, which the ledger
(runner.trading) cannot be asked to write yet.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from core.records import Order, OrderRecord, OrderState, OrderType, Portfolio, Refusal, Trade
from core.risk import RiskGuard
from runner.trading import TradingService


@dataclass
class StepOrders:
    """Orders of one step of one run, numbered in the order they are sent."""

    trading: TradingService
    run_id: int
    step: int
    price_of: dict[str, Decimal]
    bar_time: dt.datetime  # the decision bar
    filled_at: dt.datetime  # the bar whose price `price_of` holds
    seq: int = 0
    symbols: Sequence[str] = ()  # the run's symbols (default: the priced ones, sorted)
    risk: RiskGuard | None = None  # the run's risk guard, if it has one

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
        if self.risk is not None:
            refused = self._risk_refused(order, reasoning)
            if refused is not None:
                return refused
        if order.type is OrderType.MARKET:
            return self.submit(order, reasoning)
        unknown = None if order.symbol in self.price_of else \
            f"{order.symbol} is not a symbol of this run"
        placed = self.trading.place(self.run_id, self.step, self.seq, order,
                                    bar_time=self.bar_time, reasoning=reasoning,
                                    refusal=unknown)
        self.seq += 1
        return placed

    def _risk_refused(self, order: Order, reasoning: str | None) -> OrderRecord | None:
        """The order as recorded refused by the risk guard; None when it may go on to
        the ledger (counted as sent). A malformed order is the ledger's to refuse."""
        assert self.risk is not None
        if order.problem() is not None:
            return None
        with self.trading.store.ledger_tx(self.run_id, attempt=self.trading.attempt) as tx:
            before = tx.find_order(self.step, self.seq)
            traded = tx.find_trade(self.step, self.seq) if before is not None else None
            portfolio = tx.portfolio
        if before is not None:  # a replay: what was done then stands
            if (order.type is OrderType.MARKET and traded is None
                    and before.state is OrderState.REFUSED):
                self.seq += 1  # the guard refused it then: it has no trade
                return before
            return None
        refusal = self.risk.check_order(order, self._risk_price(order), portfolio,
                                        self.bar_time)
        if refusal is None:
            self.risk.record_order(self.bar_time)
            return None
        refused = self.trading.place(self.run_id, self.step, self.seq, order,
                                     bar_time=self.bar_time, reasoning=reasoning,
                                     refusal=refusal.reason)
        self.seq += 1
        return refused

    def _risk_price(self, order: Order) -> Decimal:
        """The price the guard values an order at: a market order's fill price, a
        resting order's limit (a stop's stop) price."""
        if order.type is OrderType.MARKET:
            return self.price_of.get(order.symbol, Decimal(0))
        price = order.limit_price if order.limit_price is not None else order.stop_price
        return price or Decimal(0)

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

    The lock makes `close` wait for a call already in flight, so the trades it returns
    are all the decider made, and `actions` counts every change it made to the ledger
    (orders placed, cancels, close-alls)."""

    orders: StepOrders
    trades: list[Trade] = field(default_factory=list)
    actions: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check_open(self) -> None:
        if self.closed:
            raise StepClosed(f"step {self.orders.step} is over; the order was not sent")

    def place(self, order: Order, reasoning: str | None = None) -> OrderRecord | Trade:
        with self._lock:
            self._check_open()
            placed = self.orders.place(order, reasoning)
            if isinstance(placed, Trade):
                self.trades.append(placed)
            self.actions += 1
            return placed

    def cancel(self, order_id: int, reasoning: str | None = None) -> OrderRecord | Refusal:
        with self._lock:
            self._check_open()
            done = self.orders.cancel(order_id, reasoning)
            if not isinstance(done, Refusal):
                self.actions += 1
            return done

    def open_orders(self) -> list[OrderRecord]:
        return self.orders.open_orders()

    def close_all(self, reasoning: str | None = None) -> list[Trade]:
        with self._lock:
            self._check_open()
            trades = self.orders.close_all(reasoning)
            self.trades.extend(trades)
            self.actions += 1
            return trades

    def portfolio(self) -> Portfolio:
        return self.orders.portfolio()

    def close(self) -> list[Trade]:
        with self._lock:
            self.closed = True
            return list(self.trades)
