"""A live run's orders at the user's Alpaca paper account: the ledger books what the
broker filled, at the broker's price, beside the price tickrun's rule gives the same
order (`Trade.rule_price`), so the result reports the slippage.

`PaperTrading` is the trading service of a live run on `broker: alpaca_paper`. It keeps
tickrun's own checks (the run's cash, holdings and margin: a run never trades more than
its `initial_cash`, whatever the account holds) and its risk guard (runner.broker)
before anything is sent; then:

- a market order goes to Alpaca as (run, step, seq) (runner.brokers.alpaca_paper): a
  runner that replaced a lost pod and plays the step again sends the same client order
  id and gets the first order, never a second;
- its fills come from the trade-updates stream (and the order itself, read back), for
  at most `fill_wait_seconds`; what is not filled by then is cancelled, so each step's
  trade is final: the quantity filled at the broker's average price. A partial fill
  says so in its note, a broker's refusal or an order that filled nothing is recorded
  refused with the broker's reason, and the agent reads it;
- limit, stop and stop-loss orders are refused with the reason: this book sends market
  orders only (the sim book rests the others).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.records import Order, OrderOrigin, OrderRecord, OrderType, Refusal, Side, Trade
from core.store import Store
from runner.brokers.alpaca_paper import AlpacaPaperBook, BrokerOrder
from runner.trading import JournalItem, TradingService

log = logging.getLogger(__name__)

READ_BACK_SECONDS = 0.5  # how often the order is read back while its fill is awaited
CANCEL_WAIT_SECONDS = 5.0  # how long a cancel may take to be final
MARKET_ONLY = ("the alpaca_paper book sends market orders only: limit, stop and stop-loss "
               "orders are not sent to the broker (the sim book rests them)")
NO_SHORTS = "the alpaca_paper book does not sell short (the sim book does)"


@dataclass(frozen=True)
class BrokerFill:
    """What the broker did with one order: filled `order` (its filled quantity) at
    `price`, or refused it with `refusal`."""

    order: Order
    price: Decimal | None = None
    refusal: str | None = None
    note: str | None = None


class PaperTrading(TradingService):
    def __init__(self, store: Store, book: AlpacaPaperBook, *, fill_wait_seconds: float,
                 **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.book = book
        self.fill_wait_seconds = fill_wait_seconds
        # The live session's deadline: a step played again past it (a pod lost while
        # its orders went out) books what the broker has, and sends nothing late.
        self.late: Callable[[int], str | None] | None = None

    def execute(self, run_id: int, step: int, seq: int, order: Order, *, price: Decimal,
                bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                reasoning: str | None = None, marks: Mapping[str, Decimal] | None = None,
                origin: OrderOrigin = OrderOrigin.DECIDER) -> Trade:
        """As TradingService.execute, with the fill the broker's: `price` is the rule's."""
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            done = tx.find_trade(step, seq)
            refusal = None if done else self._refusal(tx.portfolio, order, price, marks or {})
        if done is not None:
            log.info("step %s seq %s already traded; replay returns it", step, seq)
            self._committed([done])
            return done
        if refusal is None and (order.type is not OrderType.MARKET or order.stop_loss):
            refusal = MARKET_ONLY
        if refusal is None and order.side is Side.SHORT:
            refusal = NO_SHORTS
        fill = BrokerFill(order, refusal=refusal) if refusal else \
            self._at_broker(order, run_id, step, seq, late=self.late and self.late(step))
        items: list[JournalItem] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            trade = self._record_market(
                tx, step, seq, fill.order, price=fill.price or price, bar_time=bar_time,
                filled_at=filled_at or bar_time, reasoning=reasoning, origin=origin, now=step,
                items=items, refusal=fill.refusal, note=fill.note,
                rule_price=None if fill.refusal else price)
        self._committed(items)
        return trade

    def place(self, run_id: int, step: int, seq: int, order: Order, *, bar_time: dt.datetime,
              active_from: int | None = None, reasoning: str | None = None,
              refusal: str | None = None) -> OrderRecord:
        return super().place(run_id, step, seq, order, bar_time=bar_time,
                             active_from=active_from, reasoning=reasoning,
                             refusal=refusal or order.problem() or MARKET_ONLY)

    def close_all(self, run_id: int, step: int, first_seq: int, prices: Mapping[str, Decimal],
                  *, bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                  reasoning: str | None = None, symbols: Sequence[str] | None = None,
                  origin: OrderOrigin = OrderOrigin.DECIDER) -> list[Trade]:
        """Every position closed at the broker, the i-th of `symbols` as seq
        first_seq + i (nothing rests in this book: there is nothing to cancel)."""
        names = list(symbols) if symbols is not None else sorted(prices)
        holdings = self.store.get_portfolio(run_id).holdings
        trades = []
        for i, symbol in enumerate(names):
            held = holdings.get(symbol, Decimal(0))
            if held:
                order = Order.closing(symbol, held)
                trades.append(self.execute(run_id, step, first_seq + i, order,
                                           price=prices[symbol], bar_time=bar_time,
                                           filled_at=filled_at, reasoning=reasoning,
                                           marks=prices, origin=origin))
        return trades

    # -- the broker -----------------------------------------------------------------------

    def _at_broker(self, order: Order, run_id: int, step: int, seq: int, *,
                   late: str | None = None) -> BrokerFill:
        """Send the order (`late`: only find the one sent before) and await its fill."""
        placed: BrokerOrder | Refusal | None
        if late:
            placed = self.book.find(self.book.client_order_id(run_id, step, seq))
            if placed is None:
                return BrokerFill(order, refusal=f"{late}: not sent (the runner that "
                                                 "decided it was lost before sending it)")
        else:
            placed = self.book.submit(order, run_id, step, seq)
        if isinstance(placed, Refusal):
            return BrokerFill(order, refusal=placed.reason)  # names the order and the why
        final = self._settled(placed)
        filled = final.filled_quantity
        if filled <= 0 or final.filled_avg_price is None:
            return BrokerFill(order, refusal=f"alpaca paper: the order was {final.status} "
                                             "with nothing filled")
        note = None
        if filled < order.quantity:
            note = (f"alpaca paper filled {filled} of {order.quantity}; the rest was "
                    f"{final.status}")
        return BrokerFill(dataclasses.replace(order, quantity=filled),
                          price=final.filled_avg_price, note=note)

    def _settled(self, placed: BrokerOrder) -> BrokerOrder:
        """The order once it is final: filled, or what filled of it before the wait ran
        out and its cancel (or its broker) ended it."""
        latest = self._await(placed, time.monotonic() + self.fill_wait_seconds)
        if not latest.is_open:
            return latest
        log.info("alpaca paper: order %s not filled after %.1fs; cancelling the rest",
                 placed.client_order_id, self.fill_wait_seconds)
        cancelled = self.book.cancel(placed.client_order_id)
        if isinstance(cancelled, BrokerOrder):
            latest = cancelled
        final = self._await(latest, time.monotonic() + CANCEL_WAIT_SECONDS)
        if final.is_open:
            log.warning("alpaca paper: order %s is still %s after its cancel; booking the "
                        "%s filled so far", final.client_order_id, final.status,
                        final.filled_quantity)
        return final

    def _await(self, order: BrokerOrder, deadline: float) -> BrokerOrder:
        """The order as the stream and read-backs tell, until it is final or the
        deadline passes."""
        cid, latest = order.client_order_id, order
        read_back = time.monotonic() + READ_BACK_SECONDS
        while latest.is_open and time.monotonic() < deadline:
            event = self.book.next_event(timeout=0.05)
            if event is not None and event.client_order_id == cid:
                latest = event.order
            if latest.is_open and time.monotonic() >= read_back:
                latest = self.book.find(cid) or latest
                read_back = time.monotonic() + READ_BACK_SECONDS
        return latest
