"""The risk guard: limits checked outside the agent, before any order leaves tickrun.

Pure: no I/O and no wall clock. The caller passes the time (`now`: the bars' clock in
a session, an injected one in tests) and what it knows (the order's price, the
portfolio, the equity).

- Orders (`check_order`): an order is refused, with a reason that names the limit and
  the numbers, when its notional (quantity x price) is over `max_order_notional`, when
  the position it would leave in its symbol is over `max_position_shares` or
  `max_position_notional` (absolute: a short of 1,200 shares is a position of 1,200),
  or when `max_orders_per_minute` orders were sent in the sliding minute before `now`
  (`record_order` counts an order sent). An order that only reduces a position (a sell
  of at most the long held, a cover of at most the short) is never refused by the
  guard: getting out must always be possible. It still counts as sent.
- Equity (`check_equity`): at a step boundary, a Breach when the equity is more than
  `max_daily_loss` below the New York day's first equity seen by the guard (a new day
  starts from its first equity), or more than `max_drawdown_pct` percent below the
  highest equity seen (the peak). A breach stops the run, with its reason.

The guard keeps its state in memory (the day's first equity, the peak, the orders of
the last minute): a new guard starts from what it is shown first.
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.records import Order, Portfolio, Refusal, Side
from core.risk_limits import RiskLimits

__all__ = ["Breach", "RiskGuard", "RiskLimits", "reduces"]

NEW_YORK = ZoneInfo("America/New_York")
WINDOW = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Breach:
    """An equity limit crossed: the run stops, and `reason` says why."""

    limit: str  # the RiskLimits field: max_daily_loss or max_drawdown_pct
    reason: str


def reduces(order: Order, held: Decimal) -> bool:
    """Whether the order only reduces the position `held` in its symbol: a sell of at
    most the long, a cover of at most the short."""
    if order.quantity <= 0:
        return False
    if order.side is Side.SELL:
        return order.quantity <= held
    if order.side is Side.COVER:
        return order.quantity <= -held
    return False


class RiskGuard:
    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._sent: collections.deque[dt.datetime] = collections.deque()
        self._day: dt.date | None = None
        self._day_start: Decimal | None = None
        self._peak: Decimal | None = None

    # -- orders ----------------------------------------------------------------------
    def check_order(self, order: Order, price: Decimal, portfolio: Portfolio,
                    now: dt.datetime) -> Refusal | None:
        """Why the guard refuses `order` at `price` (the price it would fill at) given
        `portfolio`, at `now`; None when it may be sent."""
        held = portfolio.held(order.symbol)
        if reduces(order, held):
            return None
        limits = self.limits
        if limits.max_orders_per_minute is not None:
            sent = self._window(now)
            if sent >= limits.max_orders_per_minute:
                return _refuse("max_orders_per_minute",
                               f"{sent} orders in the last minute, at the limit "
                               f"{limits.max_orders_per_minute}")
        notional = order.quantity * price
        if limits.max_order_notional is not None and notional > limits.max_order_notional:
            return _refuse("max_order_notional",
                           f"order notional {_money(notional)} over the limit "
                           f"{_money(limits.max_order_notional)}")
        after = abs(held + (order.quantity if order.side.buys else -order.quantity))
        if limits.max_position_shares is not None and after > limits.max_position_shares:
            return _refuse("max_position_shares",
                           f"position in {order.symbol} after it {_shares(after)} shares "
                           f"over the limit {_shares(limits.max_position_shares)}")
        value = after * price
        if limits.max_position_notional is not None and value > limits.max_position_notional:
            return _refuse("max_position_notional",
                           f"position in {order.symbol} after it {_money(value)} over the "
                           f"limit {_money(limits.max_position_notional)}")
        return None

    def record_order(self, now: dt.datetime) -> None:
        """An order was sent at `now`: it counts for a minute."""
        self._window(now)
        self._sent.append(now)

    def _window(self, now: dt.datetime) -> int:
        """The orders sent in the minute up to `now` (older ones are forgotten)."""
        while self._sent and self._sent[0] <= now - WINDOW:
            self._sent.popleft()
        return len(self._sent)

    # -- equity ----------------------------------------------------------------------
    def check_equity(self, equity: Decimal, now: dt.datetime) -> Breach | None:
        """The equity at `now` (timezone-aware): a Breach when it is over the daily loss
        or the drawdown limit; None otherwise."""
        if now.tzinfo is None:
            raise ValueError("check_equity needs a timezone-aware time")
        day = now.astimezone(NEW_YORK).date()
        if day != self._day or self._day_start is None:
            self._day, self._day_start = day, equity
        if self._peak is None or equity > self._peak:
            self._peak = equity
        limits = self.limits
        loss = self._day_start - equity
        if limits.max_daily_loss is not None and loss > limits.max_daily_loss:
            return Breach("max_daily_loss",
                          f"risk limit max_daily_loss: daily loss {_money(loss)} over the "
                          f"limit {_money(limits.max_daily_loss)} (the day began at "
                          f"{_money(self._day_start)}, equity now {_money(equity)})")
        if limits.max_drawdown_pct is not None and self._peak > 0:
            drawdown = (self._peak - equity) / self._peak * 100
            if drawdown > limits.max_drawdown_pct:
                return Breach("max_drawdown_pct",
                              f"risk limit max_drawdown_pct: drawdown {drawdown:.2f}% over "
                              f"the limit {_pct(limits.max_drawdown_pct)}% (peak "
                              f"{_money(self._peak)}, equity now {_money(equity)})")
        return None


def _refuse(limit: str, why: str) -> Refusal:
    return Refusal(f"risk limit {limit}: {why}")


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _shares(value: Decimal) -> str:
    text = f"{value.normalize():,f}"
    return "0" if text == "-0" else text


def _pct(value: Decimal) -> str:
    return f"{value.normalize():f}"
