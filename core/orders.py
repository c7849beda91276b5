"""Fill rules of resting orders: pure functions of an order and one bar, no I/O.

An order decided at step t rests from bar t+1 on: it is never filled on a bar the
decider could not see yet. On each later bar, in placement (id) order:

- buy limit L:  fills when low <= L, at min(open, L) (a bar that opens under the limit
  fills at its open: the better price);
- sell limit L: fills when high >= L, at max(open, L);
- buy stop S:   fills when high >= S, at max(open, S) (a gap over the stop fills at
  the open, the first price there was);
- sell stop S:  fills when low <= S, at min(open, S) (a gap through the stop fills at
  the open: the loss is bigger than the stop said, as in a market);
- stop-limit (S, L): the stop triggers as above; from then on it is a limit order at L.
  On the trigger bar itself, as backtesting.py 0.6 decides (its `_process_orders`):
  when the stop triggers within the bar, the order fills on that bar only if its limit
  is beyond the stop (buy: L > S; sell: L < S), at the stop price; a limit at or inside
  the stop needs the price to come back after the trigger, and the bar's range cannot
  say whether it did after or before: it may fill from the next bar on. When the bar
  opens through the stop (a gap), the trigger is the open and the rest of the bar
  follows it: the order is a limit from the open (fills when the range reaches L, at
  min(open, L) for a buy). backtesting.py fills a gapped stop-limit at the stop price,
  better than the open; tickrun never fills better than the price was.

Buy-side orders are buy and cover; sell-side, sell and short. Day orders live until
the end of the session of the first bar they may fill on (`day_order_last_step`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from core.bars import Bar
from core.records import OrderType, Side, TimeInForce

# Seq numbers of the orders the engine places, per step, apart from the decider's own
# (0, 1, 2... in the order it sends them): a replayed step finds each again by its key.
MARGIN_CALL_SEQ = 1_000_000  # + the symbol's index in the run's symbols
FLAT_AT_CLOSE_SEQ = 2_000_000  # + the symbol's index
STOP_LOSS_SEQ = 3_000_000  # + the parent order's seq (at the parent's step)
FLATTEN_ON_STOP_SEQ = 4_000_000  # + the symbol's index: a live run flat when stopped
ENGINE_SEQ = MARGIN_CALL_SEQ  # seqs from here on are the engine's, not the decider's


class RestingOrder(Protocol):
    """What the rules read of an order (core.records.OrderRecord has it)."""

    @property
    def side(self) -> Side: ...

    @property
    def type(self) -> OrderType: ...

    @property
    def limit_price(self) -> Decimal | None: ...

    @property
    def stop_price(self) -> Decimal | None: ...

    @property
    def triggered_at(self) -> dt.datetime | None: ...


@dataclass(frozen=True, slots=True)
class BarOutcome:
    """What one bar does to a resting order."""

    price: Decimal | None = None  # its fill price; None: not filled on this bar
    triggered: bool = False  # a stop-limit's stop was hit on this bar (filled or not)

    @property
    def filled(self) -> bool:
        return self.price is not None


NOTHING = BarOutcome()


def limit_fill(buys: bool, limit: Decimal, bar: Bar) -> Decimal | None:
    """A limit order's price on this bar, None when the bar does not reach it."""
    if buys:
        return min(bar.open, limit) if bar.low <= limit else None
    return max(bar.open, limit) if bar.high >= limit else None


def stop_trigger(buys: bool, stop: Decimal, bar: Bar) -> Decimal | None:
    """The price a stop triggers at on this bar (the open when the bar gaps through
    it), None when the bar does not reach it."""
    if buys:
        return max(bar.open, stop) if bar.high >= stop else None
    return min(bar.open, stop) if bar.low <= stop else None


def evaluate(order: RestingOrder, bar: Bar) -> BarOutcome:
    """What `bar` does to `order`, which may fill on it (the caller checks that: the
    order's active_from step is this bar's or an earlier one)."""
    buys = order.side.buys
    if order.type is OrderType.LIMIT:
        assert order.limit_price is not None
        return BarOutcome(limit_fill(buys, order.limit_price, bar))
    if order.type is OrderType.STOP:
        assert order.stop_price is not None
        return BarOutcome(stop_trigger(buys, order.stop_price, bar))
    if order.type is OrderType.STOP_LIMIT:
        assert order.limit_price is not None and order.stop_price is not None
        limit, stop = order.limit_price, order.stop_price
        if order.triggered_at is not None:  # triggered on an earlier bar: a limit order
            return BarOutcome(limit_fill(buys, limit, bar))
        trigger = stop_trigger(buys, stop, bar)
        if trigger is None:
            return NOTHING
        if (bar.open >= stop) if buys else (bar.open <= stop):
            # Triggered at the open: the whole bar follows; a limit order from there.
            return BarOutcome(limit_fill(buys, limit, bar), triggered=True)
        beyond = limit > stop if buys else limit < stop
        return BarOutcome(stop if beyond else None, triggered=True)
    raise ValueError(f"a {order.type.value} order does not rest")


def day_order_last_step(active_from: int, sessions: Sequence[dt.date]) -> int:
    """The last step a day order may fill on: the last bar of the session of its first
    bar. `sessions[i]` is the session date of step i's bar; a daily backtest has one bar
    a session (the order lives one bar), an intraday run one session (the whole run).
    An order whose first bar is past the run's end has none: its last step is the
    run's last (it expires when the run ends)."""
    if active_from >= len(sessions):
        return len(sessions) - 1
    day = sessions[active_from]
    last = active_from
    while last + 1 < len(sessions) and sessions[last + 1] == day:
        last += 1
    return last


def expires_after(time_in_force: TimeInForce, active_from: int,
                  sessions: Sequence[dt.date]) -> int | None:
    """The step after whose bar an unfilled order expires; None for GTC orders, which
    live until filled, cancelled, or the run ends."""
    if time_in_force is TimeInForce.GTC:
        return None
    return day_order_last_step(active_from, sessions)
