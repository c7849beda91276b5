"""TradingService: every change to a run's ledger is one transaction.

Lock the portfolio, validate, write the order, its trade, its events and the new
portfolio, all or nothing; concurrent orders on one run serialize on the lock and can
never overdraw. A refusal is a result with a reason, recorded like a fill (a refused
trade, a refused order), because the agent must see it.

Orders and trades are keyed by (run, step, seq): replaying a step after a crash returns
the trade or the order already made instead of trading twice. A market order's trade has
its order's key; so does a resting order's fill, whenever it comes (the step it was
decided on, the bar it filled on in `filled_at`), and the trade's unique order_id makes
a second fill of one order impossible. The engine's own orders (a margin call's covers,
an intraday run's flat-at-close, a stop-loss) take seqs of their own (core.orders).

Resting orders are settled once per bar (`settle_bar`): in placement order against the
bar's range (core.orders), then day orders whose session ended expire, then the
maintenance margin is checked at the close (core.margin); the whole bar is one
transaction, marked done on the portfolio row, so a step played again after a crash
settles nothing twice.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core import margin
from core.bars import Bar
from core.orders import (
    MARGIN_CALL_SEQ,
    STOP_LOSS_SEQ,
    evaluate,
    expires_after,
)
from core.records import (
    Order,
    OrderEvent,
    OrderEventKind,
    OrderOrigin,
    OrderRecord,
    OrderState,
    OrderType,
    Portfolio,
    PositionRecord,
    Refusal,
    Side,
    TimeInForce,
    Trade,
    TradeStatus,
)
from core.spec import INITIAL_MARGIN, MAINTENANCE_MARGIN
from core.store import LedgerTx, Store

log = logging.getLogger(__name__)

CLOSE_ALL = "close-all"  # the reason of the orders a close-all (or flat-at-close) cancels


@dataclass(frozen=True, slots=True)
class OrderChange:
    """A state change of an order, with the order as it is after it: what the session
    publishes as an `order` event."""

    event: OrderEvent
    order: OrderRecord


JournalItem = Trade | OrderChange


class TradingService:
    def __init__(self, store: Store, *, fee_per_trade: Decimal = Decimal(0),
                 attempt: int | None = None, initial_margin: Decimal = INITIAL_MARGIN,
                 maintenance_margin: Decimal = MAINTENANCE_MARGIN) -> None:
        self.store = store
        self.fee_per_trade = fee_per_trade
        self.attempt = attempt  # fences the ledger: see Store.transition
        self.initial_margin = initial_margin
        self.maintenance_margin = maintenance_margin
        self._journal: list[JournalItem] = []
        self._journal_lock = threading.Lock()

    def take_journal(self) -> list[JournalItem]:
        """What the ledger recorded through this service since the last call, in commit
        order: trades (new ones, and those a replay found again) and order changes (new
        ones: a replay that changes nothing has none)."""
        with self._journal_lock:
            items, self._journal = self._journal, []
        return items

    def _committed(self, items: list[JournalItem]) -> None:
        with self._journal_lock:
            self._journal.extend(items)

    # -- market orders ---------------------------------------------------------------
    def execute(self, run_id: int, step: int, seq: int, order: Order, *, price: Decimal,
                bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                reasoning: str | None = None, marks: Mapping[str, Decimal] | None = None,
                origin: OrderOrigin = OrderOrigin.DECIDER) -> Trade:
        """Trade the market order `order`, decided on the bar of `bar_time`, at `price`:
        the price of the bar at `filled_at` (by default the decision bar itself, as under
        the close rule). `marks`: the other symbols' prices now, for the margin rules. The
        order is recorded too (filled or refused), with its events."""
        fill_time = bar_time if filled_at is None else filled_at
        items: list[JournalItem] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt,
                                  trade_key=(step, seq)) as tx:
            done = tx.find_trade(step, seq)
            if done is not None:
                log.info("step %s seq %s already traded; replay returns it", step, seq)
                items.append(done)
                trade = done
            else:
                trade = self._market(tx, step, seq, order, price=price, bar_time=bar_time,
                                     filled_at=fill_time, marks=marks or {},
                                     reasoning=reasoning, origin=origin, now=step, items=items)
        self._committed(items)
        return trade

    def _market(self, tx: LedgerTx, step: int, seq: int, order: Order, *, price: Decimal,
                bar_time: dt.datetime, filled_at: dt.datetime, marks: Mapping[str, Decimal],
                reasoning: str | None, origin: OrderOrigin, now: int,
                items: list[JournalItem], note: str | None = None) -> Trade:
        """A market order and its fill (or refusal), inside `tx`. `now`: the step being
        played; `note`: a filled trade's reason (a margin call says why it covered)."""
        refusal = self._refusal(tx.portfolio, order, price, marks)
        if refusal is None and order.type is not OrderType.MARKET:
            refusal = f"a {order.type.value} order rests: it cannot fill as a market order"
        return self._record_market(tx, step, seq, order, price=price, bar_time=bar_time,
                                   filled_at=filled_at, reasoning=reasoning, origin=origin,
                                   now=now, items=items, refusal=refusal, note=note)

    def _record_market(self, tx: LedgerTx, step: int, seq: int, order: Order, *,
                       price: Decimal, bar_time: dt.datetime, filled_at: dt.datetime,
                       reasoning: str | None, origin: OrderOrigin, now: int,
                       items: list[JournalItem], refusal: str | None, note: str | None = None,
                       rule_price: Decimal | None = None) -> Trade:
        """A market order filled at `price` (or refused with `refusal`), recorded inside
        `tx` with its events. `rule_price`: a broker's fill, the price by tickrun's rule."""
        filled = refusal is None
        new_order = dict(
            step=step, seq=seq, bar_time=bar_time, active_from=step + 1, order=order,
            origin=origin, state=OrderState.FILLED if filled else OrderState.REFUSED,
            reason=refusal or note, filled_at=filled_at if filled else None,
            fill_price=price if filled else None, reasoning=reasoning)
        fields, after = self._trade_of(tx.portfolio, step, seq, order, price, bar_time,
                                       filled_at, reasoning, refusal, note, rule_price)
        rec, trade = tx.insert_order_and_trade(new_order, fields)
        self._keep_fill(tx, after, trade)
        rec = dataclasses.replace(rec, trade_id=trade.id)
        placed = OrderEvent(rec.id, now, OrderEventKind.PLACED, bar_time)
        outcome = OrderEvent(rec.id, now,
                             OrderEventKind.FILLED if filled else OrderEventKind.REFUSED,
                             filled_at if filled else bar_time, price, refusal or note)
        tx.add_order_events([placed, outcome])
        as_placed = dataclasses.replace(rec, state=OrderState.OPEN, reason=None,
                                        filled_at=None, fill_price=None, trade_id=None)
        items += [OrderChange(placed, as_placed), OrderChange(outcome, rec), trade]
        if filled and order.stop_loss is not None:
            # Live from the bar after the decision: the fill is at its open (next_open)
            # or the decision bar's close is over (close).
            self._stop_loss(tx, rec, active_from=step + 1, now=now, bar_time=filled_at,
                            items=items)
        return trade

    # -- resting orders --------------------------------------------------------------
    def place(self, run_id: int, step: int, seq: int, order: Order, *, bar_time: dt.datetime,
              active_from: int | None = None, reasoning: str | None = None,
              refusal: str | None = None) -> OrderRecord:
        """Put a limit, stop or stop-limit order in the book, open from the bar of
        `active_from` (by default the step after its decision). A malformed order (or
        one the caller refuses with `refusal`, such as an unknown symbol) is recorded
        refused, never open. A replay returns the order placed before."""
        items: list[JournalItem] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            found = tx.find_order(step, seq)
            if found is not None:
                log.info("step %s seq %s already placed; replay returns it", step, seq)
                rec = found
            else:
                why = refusal or order.problem()
                if why is None and not order.type.rests:
                    why = "a market order does not rest: it fills at once"
                rec = tx.insert_order(
                    step=step, seq=seq, bar_time=bar_time,
                    active_from=step + 1 if active_from is None else active_from,
                    order=order, origin=OrderOrigin.DECIDER,
                    state=OrderState.REFUSED if why else OrderState.OPEN, reason=why,
                    reasoning=reasoning)
                event = OrderEvent(rec.id, step, OrderEventKind.REFUSED if why
                                   else OrderEventKind.PLACED, bar_time, reason=why)
                tx.add_order_events([event])
                items.append(OrderChange(event, rec))
        self._committed(items)
        return rec

    def cancel(self, run_id: int, order_id: int, *, step: int, bar_time: dt.datetime | None,
               reason: str = "cancelled by the decider") -> OrderRecord | Refusal:
        """Cancel an open order of the run: the order, cancelled; a Refusal (nothing
        changed) for an order that is not open, or not the run's."""
        items: list[JournalItem] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            rec = tx.get_order(order_id)
            if rec is None:
                return Refusal(f"no order {order_id} in this run")
            if not rec.is_open:
                return Refusal(f"order {order_id} is {rec.state.value} already")
            done = self._end(tx, rec, OrderState.CANCELLED, reason, now=step,
                             bar_time=bar_time, items=items)
        self._committed(items)
        return done

    def settle_bar(self, run_id: int, step: int, bars: Mapping[str, Bar], *,
                   bar_time: dt.datetime, sessions: Sequence[dt.date],
                   symbols: Sequence[str]) -> list[Trade] | None:
        """Settle the bar of `step` (just closed) once: the resting orders that may fill
        on it are filled (or refused) in placement order, a stop-limit whose stop it hit
        is triggered, day orders whose session ends with it expire; then, at its close,
        a portfolio under the maintenance margin has its shorts covered (a margin call).
        One transaction; its trades. None when the bar was settled before (a replay):
        nothing is done again."""
        items: list[JournalItem] = []
        trades: list[Trade] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            if tx.bars_done >= step:
                log.info("the bar of step %s was settled before; nothing to do", step)
                return None
            opens = {s: b.open for s, b in bars.items()}
            book = collections.deque(tx.open_orders())
            while book:
                rec = book.popleft()
                bar = bars.get(rec.symbol)
                if rec.active_from > step or bar is None:
                    continue
                outcome = evaluate(rec, bar)
                if outcome.triggered:
                    rec = self._trigger(tx, rec, now=step, bar_time=bar_time, items=items)
                if outcome.price is not None:
                    trade, child = self._fill_resting(
                        tx, rec, outcome.price, now=step, bar_time=bar_time,
                        marks={**opens, rec.symbol: outcome.price}, items=items)
                    if trade is not None:
                        trades.append(trade)
                    if child is not None:  # a stop-loss, live on this very bar
                        book.append(child)
                    continue
                last = expires_after(rec.time_in_force, rec.active_from, sessions)
                if last is not None and last <= step:
                    self._end(tx, rec, OrderState.EXPIRED, "day order: its session ended "
                              "without a fill", now=step, bar_time=bar_time, items=items)
            trades += self._margin_call(tx, step, {s: b.close for s, b in bars.items()},
                                        bar_time=bar_time, symbols=symbols, items=items)
            tx.mark_bars_done(step)
        self._committed(items)
        return trades

    def _fill_resting(self, tx: LedgerTx, rec: OrderRecord, price: Decimal, *, now: int,
                      bar_time: dt.datetime, marks: Mapping[str, Decimal],
                      items: list[JournalItem]) -> tuple[Trade | None, OrderRecord | None]:
        """A resting order the bar reached: its trade (filled or refused) and the
        stop-loss its fill placed, if any. A stop-loss whose position is gone is
        cancelled instead (nothing left to protect)."""
        order = rec.order()
        if rec.origin is OrderOrigin.STOP_LOSS:
            held = tx.portfolio.held(rec.symbol)
            if (held <= 0) if rec.side is Side.SELL else (held >= 0):
                self._end(tx, rec, OrderState.CANCELLED, "the position it protected is "
                          "closed", now=now, bar_time=bar_time, items=items)
                return None, None
        refusal = self._refusal(tx.portfolio, order, price, marks)
        filled = refusal is None
        trade = self._book(tx, rec.step, rec.seq, order, price, rec.bar_time, bar_time,
                           rec.reasoning, refusal, rec.id, None)
        changed = tx.update_order(
            rec.id, state=OrderState.FILLED if filled else OrderState.REFUSED,
            reason=refusal, filled_at=bar_time if filled else None,
            fill_price=price if filled else None)
        assert changed is not None, "an open order read in this transaction"
        changed = dataclasses.replace(changed, trade_id=trade.id)
        event = OrderEvent(rec.id, now, OrderEventKind.FILLED if filled
                           else OrderEventKind.REFUSED, bar_time, price, refusal)
        tx.add_order_events([event])
        items += [OrderChange(event, changed), trade]
        child = None
        if filled and order.stop_loss is not None:
            child = self._stop_loss(tx, changed, active_from=now, now=now,
                                    bar_time=bar_time, items=items)
        return trade, child

    def _stop_loss(self, tx: LedgerTx, parent: OrderRecord, *, active_from: int, now: int,
                   bar_time: dt.datetime, items: list[JournalItem]) -> OrderRecord:
        """The stop a filled buy (short) asked for: sell (cover) its quantity when the
        price falls (rises) to stop_loss. GTC: it protects the position as long as it
        lasts. Keyed after its parent, so a replay cannot place it twice."""
        assert parent.stop_loss is not None
        child = Order(Side.SELL if parent.side is Side.BUY else Side.COVER, parent.symbol,
                      parent.quantity, OrderType.STOP, stop_price=parent.stop_loss,
                      time_in_force=TimeInForce.GTC)
        rec = tx.insert_order(step=parent.step, seq=STOP_LOSS_SEQ + parent.seq,
                              bar_time=parent.bar_time, active_from=active_from, order=child,
                              origin=OrderOrigin.STOP_LOSS, state=OrderState.OPEN,
                              parent_id=parent.id,
                              reasoning=f"stop-loss of order {parent.id}")
        event = OrderEvent(rec.id, now, OrderEventKind.PLACED, bar_time)
        tx.add_order_events([event])
        items.append(OrderChange(event, rec))
        return rec

    def _trigger(self, tx: LedgerTx, rec: OrderRecord, *, now: int, bar_time: dt.datetime,
                 items: list[JournalItem]) -> OrderRecord:
        """A stop-limit's stop was hit: it is a limit order from now on."""
        changed = tx.update_order(rec.id, triggered_at=bar_time)
        assert changed is not None
        event = OrderEvent(rec.id, now, OrderEventKind.TRIGGERED, bar_time, rec.stop_price)
        tx.add_order_events([event])
        items.append(OrderChange(event, changed))
        return changed

    def _end(self, tx: LedgerTx, rec: OrderRecord, state: OrderState, reason: str, *,
             now: int, bar_time: dt.datetime | None,
             items: list[JournalItem]) -> OrderRecord:
        """Cancel or expire an open order (it never filled)."""
        changed = tx.update_order(rec.id, state=state, reason=reason)
        assert changed is not None, "an open order read in this transaction"
        kind = OrderEventKind.CANCELLED if state is OrderState.CANCELLED \
            else OrderEventKind.EXPIRED
        event = OrderEvent(rec.id, now, kind, bar_time, reason=reason)
        tx.add_order_events([event])
        items.append(OrderChange(event, changed))
        return changed

    def end_orders(self, run_id: int, step: int, *, bar_time: dt.datetime) -> list[OrderRecord]:
        """The run ends after the bar of `step`: its open day orders expire (their
        session ended, or the run ended before it) and its GTC orders are cancelled."""
        items: list[JournalItem] = []
        ended = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            for rec in tx.open_orders():
                if rec.time_in_force is TimeInForce.GTC:
                    state, why = OrderState.CANCELLED, "the run ended"
                elif rec.active_from > step:
                    state, why = OrderState.EXPIRED, "the run ended before its session"
                else:
                    state, why = OrderState.EXPIRED, "day order: the session ended"
                ended.append(self._end(tx, rec, state, why, now=step, bar_time=bar_time,
                                       items=items))
        self._committed(items)
        return ended

    # -- close-all and the margin ----------------------------------------------------
    def close_all(self, run_id: int, step: int, first_seq: int, prices: Mapping[str, Decimal],
                  *, bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                  reasoning: str | None = None, symbols: Sequence[str] | None = None,
                  origin: OrderOrigin = OrderOrigin.DECIDER) -> list[Trade]:
        """Cancel the open orders and flatten every position (sell longs, cover shorts)
        at `prices`, in one transaction. The i-th of `symbols` (by default the priced
        ones, sorted) trades with seq first_seq + i, so a close-all takes len(symbols)
        seqs whatever it holds. Idempotent: a replay finds its trades; orders the same
        step placed after it (higher seqs) are neither cancelled nor flattened again."""
        names = list(symbols) if symbols is not None else sorted(prices)
        fill_time = bar_time if filled_at is None else filled_at
        end_seq = first_seq + len(names)
        items: list[JournalItem] = []
        trades: list[Trade] = []
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            decided = tx.step_orders(step)
            if any(end_seq <= o.seq < MARGIN_CALL_SEQ for o in decided):
                # It ran before the rest of its step: what it did is in the ledger.
                found = (tx.find_trade(step, first_seq + i) for i in range(len(names)))
                trades = [t for t in found if t is not None]
                items.extend(trades)
            else:
                for rec in tx.open_orders():
                    if _decided_before(rec, step, first_seq):
                        self._end(tx, rec, OrderState.CANCELLED, CLOSE_ALL, now=step,
                                  bar_time=bar_time, items=items)
                for i, symbol in enumerate(names):
                    done = tx.find_trade(step, first_seq + i)
                    if done is not None:
                        trades.append(done)
                        items.append(done)
                        continue
                    held = tx.portfolio.held(symbol)
                    if held == 0:
                        continue
                    order = Order.closing(symbol, held)
                    trades.append(self._market(
                        tx, step, first_seq + i, order, price=prices[symbol],
                        bar_time=bar_time, filled_at=fill_time, marks=prices,
                        reasoning=reasoning, origin=origin, now=step, items=items))
        self._committed(items)
        return trades

    def _margin_call(self, tx: LedgerTx, step: int, closes: Mapping[str, Decimal], *,
                     bar_time: dt.datetime, symbols: Sequence[str],
                     items: list[JournalItem]) -> list[Trade]:
        why = margin.maintenance_call(tx.portfolio, closes, self.maintenance_margin)
        if why is None:
            return []
        log.warning("step %d: %s", step, why)
        trades = []
        for i, symbol in enumerate(symbols):
            held = tx.portfolio.held(symbol)
            if held < 0:
                trades.append(self._market(
                    tx, step, MARGIN_CALL_SEQ + i, Order(Side.COVER, symbol, -held),
                    price=closes[symbol], bar_time=bar_time, filled_at=bar_time,
                    marks=closes, reasoning=why, origin=OrderOrigin.MARGIN_CALL, now=step,
                    items=items, note=why))
        return trades

    # -- the rules -------------------------------------------------------------------
    def _refusal(self, portfolio: Portfolio, order: Order, price: Decimal,
                 marks: Mapping[str, Decimal]) -> str | None:
        problem = order.problem()
        if problem is not None:
            return problem
        if price <= 0:
            return f"no valid price for {order.symbol}"
        held = portfolio.held(order.symbol)
        prices = {**marks, order.symbol: price}
        qty, at, fee = _num(order.quantity), _num(price), _num(self.fee_per_trade)
        if order.side is Side.BUY:
            if held < 0:
                return (f"{order.symbol} is held short ({_num(-held)}): cover it; a buy opens "
                        "or adds to a long")
            cost = order.quantity * price + self.fee_per_trade
            shorts = margin.short_value(portfolio, prices)
            if portfolio.cash - shorts < cost:
                held_back = f" less {_num(shorts)} held against shorts" if shorts else ""
                return (f"insufficient cash: {qty} x {at} + fees {fee} = {_num(cost)} > cash "
                        f"{_num(portfolio.cash)}{held_back}")
        elif order.side is Side.SELL:
            if held < order.quantity:
                return (f"insufficient holdings: selling {qty} {order.symbol}, "
                        f"holding {_num(held)}")
        elif order.side is Side.SHORT:
            if held > 0:
                return (f"{order.symbol} is held long ({_num(held)}): sell it; a short needs "
                        "no long position in its symbol")
            after = self._apply(portfolio, order, price)
            breach = margin.initial_margin_refusal(after, prices, self.initial_margin)
            if breach is not None:
                return f"margin: shorting {qty} {order.symbol} at {at}: {breach}"
        elif -held < order.quantity:  # cover
            return (f"insufficient short: covering {qty} {order.symbol}, short "
                    f"{_num(max(-held, Decimal(0)))}")
        return None

    def _apply(self, portfolio: Portfolio, order: Order, price: Decimal) -> Portfolio:
        holdings = dict(portfolio.holdings)
        notional = order.quantity * price
        if order.side.buys:
            cash = portfolio.cash - notional - self.fee_per_trade
            holdings[order.symbol] = portfolio.held(order.symbol) + order.quantity
        else:
            cash = portfolio.cash + notional - self.fee_per_trade
            holdings[order.symbol] = portfolio.held(order.symbol) - order.quantity
        holdings = {s: q for s, q in holdings.items() if q != 0}
        return Portfolio(run_id=portfolio.run_id, cash=cash, holdings=holdings)

    def _book(self, tx: LedgerTx, step: int, seq: int, order: Order, price: Decimal,
              bar_time: dt.datetime, filled_at: dt.datetime, reasoning: str | None,
              refusal: str | None, order_id: int, note: str | None) -> Trade:
        """The trade of an order already recorded (refused when `refusal`), and for a
        fill the new portfolio and its position record."""
        fields, after = self._trade_of(tx.portfolio, step, seq, order, price, bar_time,
                                       filled_at, reasoning, refusal, note)
        trade = tx.insert_trade(**fields, order_id=order_id)
        self._keep_fill(tx, after, trade)
        return trade

    def _trade_of(self, portfolio: Portfolio, step: int, seq: int, order: Order,
                  price: Decimal, bar_time: dt.datetime, filled_at: dt.datetime,
                  reasoning: str | None, refusal: str | None, note: str | None,
                  rule_price: Decimal | None = None
                  ) -> tuple[dict[str, Any], Portfolio | None]:
        """An order's trade (insert_trade's arguments but its order), and the portfolio
        after it (None: refused)."""
        trade: dict[str, Any] = dict(step=step, seq=seq, bar_time=bar_time, side=order.side,
                                     symbol=order.symbol, quantity=order.quantity,
                                     price=price, reasoning=reasoning)
        if refusal is not None:  # it never filled: no fill time
            return dict(trade, filled_at=None, fees=Decimal(0), status=TradeStatus.REFUSED,
                        reason=refusal, cash_after=portfolio.cash), None
        after = self._apply(portfolio, order, price)
        return dict(trade, filled_at=filled_at, fees=self.fee_per_trade,
                    status=TradeStatus.FILLED, reason=note, cash_after=after.cash,
                    rule_price=rule_price), after

    @staticmethod
    def _keep_fill(tx: LedgerTx, after: Portfolio | None, trade: Trade) -> None:
        """A fill's new portfolio and its position record (a refusal has none)."""
        if after is None:
            return
        assert trade.filled_at is not None, "a fill has its time"
        tx.save_portfolio(after)
        tx.insert_position(PositionRecord(
            run_id=after.run_id, step=trade.step, seq=trade.seq, bar_time=trade.bar_time,
            filled_at=trade.filled_at, action=trade.side, symbol=trade.symbol,
            cash=after.cash, holdings=after.holdings, reasoning=trade.reasoning,
        ))


def _num(value: Decimal) -> str:
    """A number as people write it: 200, not 200.000000 (PostgreSQL's NUMERIC scale)."""
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


def _decided_before(rec: OrderRecord, step: int, seq: int) -> bool:
    """Whether an order was decided before the action at (step, seq): at an earlier
    step, or earlier in this one (a stop-loss counts from its parent's seq; the engine's
    own orders of a step come before the decider's)."""
    if rec.step != step:
        return rec.step < step
    if rec.origin is OrderOrigin.DECIDER:
        return rec.seq < seq
    if rec.origin is OrderOrigin.STOP_LOSS:
        return rec.seq - STOP_LOSS_SEQ < seq
    return True
