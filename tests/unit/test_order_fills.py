"""Fill rules of resting orders (core.orders), hand-computed on fixed bars.

Each case says the bar an order fills on and its price; the stop-limit cases are also
played through backtesting.py, whose trigger-bar rule tickrun follows (its one
difference, a stop-limit gapped through, is asserted as such).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, replace
from decimal import Decimal

import pandas as pd
import pytest

from core.orders import day_order_last_step, evaluate, expires_after
from core.records import OrderType, Side, TimeInForce

D = Decimal


@dataclass(frozen=True)
class B:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def bar(o: str, h: str, lo: str, c: str) -> B:
    return B(D(o), D(h), D(lo), D(c))


@dataclass(frozen=True)
class Resting:
    side: Side
    type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    triggered_at: dt.datetime | None = None


def limit(side: Side, price: str) -> Resting:
    return Resting(side, OrderType.LIMIT, limit_price=D(price))


def stop(side: Side, price: str) -> Resting:
    return Resting(side, OrderType.STOP, stop_price=D(price))


def stop_limit(side: Side, stop_at: str, limit_at: str) -> Resting:
    return Resting(side, OrderType.STOP_LIMIT, limit_price=D(limit_at), stop_price=D(stop_at))


FLAT = bar("100", "100.5", "99.5", "100")


def first_fill(order: Resting, bars: list[B]) -> tuple[int, Decimal] | None:
    """(index, price) of the first bar that fills `order`, carrying a stop-limit's
    trigger from bar to bar as the engine does."""
    for i, b in enumerate(bars):
        outcome = evaluate(order, b)
        if outcome.triggered:
            order = replace(order, triggered_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        if outcome.price is not None:
            return i, outcome.price
    return None


@pytest.mark.parametrize(("order", "b", "price"), [
    # Buy limit 99: the low reaches it, the open (100) is above: the limit price.
    (limit(Side.BUY, "99"), bar("100", "101", "98.5", "100.5"), "99"),
    # ... opens at 97, under the limit: the open, the better price.
    (limit(Side.BUY, "99"), bar("97", "98", "96", "97"), "97"),
    # ... a low of 99.01 never reaches 99.
    (limit(Side.BUY, "99"), bar("100", "101", "99.01", "100"), None),
    # A cover is a buy: the same rule.
    (limit(Side.COVER, "99"), bar("100", "101", "98.5", "100.5"), "99"),
    # Sell limit 102: the high reaches it; a gap up to 103 fills at the open.
    (limit(Side.SELL, "102"), bar("100", "102.5", "99", "101"), "102"),
    (limit(Side.SELL, "102"), bar("103", "104", "102.5", "103"), "103"),
    (limit(Side.SHORT, "102"), bar("100", "101.99", "99", "101"), None),
    # Buy stop 102 (a breakout): the high reaches it; a gap over it fills at the open.
    (stop(Side.BUY, "102"), bar("100", "102.5", "99.5", "102"), "102"),
    (stop(Side.BUY, "102"), bar("103", "104", "102.5", "103"), "103"),
    (stop(Side.BUY, "102"), bar("100", "101.5", "99", "101"), None),
    # Sell stop 98 (a stop-loss): the low reaches it...
    (stop(Side.SELL, "98"), bar("100", "100.5", "97.5", "98"), "98"),
    # ... and a gap down through it fills at the open, 95: 3 worse than the stop said.
    (stop(Side.SELL, "98"), bar("95", "96", "94", "95"), "95"),
    (stop(Side.SELL, "98"), bar("99", "99.5", "98.01", "99"), None),
    (stop(Side.COVER, "102"), bar("101", "102", "100", "101"), "102"),
])
def test_limit_and_stop_orders_fill_at_the_documented_price(
        order: Resting, b: B, price: str | None) -> None:
    assert evaluate(order, b).price == (None if price is None else D(price))


def test_a_stop_limit_beyond_its_stop_fills_on_the_trigger_bar_at_the_stop() -> None:
    # Buy stop 102, limit 103: the bar trades 100 -> 102.5: triggered at 102, inside the
    # limit: filled there.
    outcome = evaluate(stop_limit(Side.BUY, "102", "103"), bar("100", "102.5", "99", "101"))
    assert outcome.triggered and outcome.price == D(102)
    # Sell stop 98, limit 97.5: triggered at 98, above the limit: filled at 98.
    outcome = evaluate(stop_limit(Side.SELL, "98", "97.5"), bar("100", "100", "97", "97.2"))
    assert outcome.triggered and outcome.price == D(98)


def test_a_stop_limit_at_or_inside_its_stop_waits_for_the_next_bar() -> None:
    # Buy stop 102, limit 101.5: triggered by the 102.5 high; the 99 low may have come
    # before the trigger: no fill on that bar; the next bar is a limit 101.5 bar.
    order = stop_limit(Side.BUY, "102", "101.5")
    trigger = bar("100", "102.5", "99", "101")
    assert evaluate(order, trigger).triggered and evaluate(order, trigger).price is None
    assert first_fill(order, [trigger, bar("102", "102.2", "101", "101.8")]) == (1, D("101.5"))
    # A limit equal to the stop waits too (the price must come back after the trigger).
    assert first_fill(stop_limit(Side.BUY, "102", "102"),
                      [trigger, bar("102", "102.2", "101", "101.8")]) == (1, D(102))
    # Not triggered: nothing, even though the low is under the limit.
    assert evaluate(order, bar("100", "101.9", "99", "101")).triggered is False


def test_a_stop_limit_gapped_through_its_stop_is_a_limit_order_from_the_open() -> None:
    order = stop_limit(Side.BUY, "102", "103")
    # Opens at 104 (over stop and limit), comes down to 102.8: the limit fills at 103.
    assert evaluate(order, bar("104", "105", "102.8", "104")).price == D(103)
    # Opens at 102.5, between stop and limit: marketable at the open.
    assert evaluate(order, bar("102.5", "103", "102.2", "102.6")).price == D("102.5")
    # Opens at 104 and stays over 103: triggered, unfilled; the next bar fills at 103.
    gap = bar("104", "105", "103.5", "104")
    assert evaluate(order, gap).triggered and evaluate(order, gap).price is None
    assert first_fill(order, [gap, bar("104", "104.5", "102.9", "103")]) == (1, D(103))


def test_day_orders_live_for_the_session_of_their_first_bar() -> None:
    days = [dt.date(2024, 1, d) for d in (2, 3, 4, 5)]
    # Daily: one bar a session. Decided at step 0, it may fill on step 1 only.
    assert day_order_last_step(1, days) == 1
    assert expires_after(TimeInForce.DAY, 1, days) == 1
    assert expires_after(TimeInForce.GTC, 1, days) is None
    # Decided on the last bar: no session left; it ends with the run.
    assert day_order_last_step(4, days) == 3
    # Intraday: one session; a day order lives to its last minute.
    minutes = [dt.date(2024, 1, 2)] * 390
    assert day_order_last_step(1, minutes) == 389 and day_order_last_step(389, minutes) == 389


def test_a_market_order_does_not_rest() -> None:
    with pytest.raises(ValueError, match="does not rest"):
        evaluate(Resting(Side.BUY, OrderType.MARKET), FLAT)


# -- the same cases through backtesting.py ---------------------------------------------
def backtesting_fill(bars: list[B], order: Resting) -> tuple[int, Decimal] | None:
    """Place `order` (1 share) in backtesting.py on the first bar it decides on (bar 1:
    its first next()), and return the bar and price of its fill, counted from bar 2 as
    our (index, price) are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from backtesting import Backtest, Strategy

    frame = pd.DataFrame([[float(b.open), float(b.high), float(b.low), float(b.close)]
                          for b in [FLAT, FLAT, *bars, FLAT]],
                         columns=["Open", "High", "Low", "Close"],
                         index=pd.date_range("2020-01-01", periods=len(bars) + 3, freq="D"))
    frame["Volume"] = 1000

    class Place(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            if len(self.data) == 2:
                send = self.buy if order.side.buys else self.sell
                send(size=1, stop=None if order.stop_price is None else float(order.stop_price),
                     limit=None if order.limit_price is None else float(order.limit_price))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, Place, cash=10_000, commission=0, trade_on_close=False,
                         exclusive_orders=False, finalize_trades=True).run()
    fills = [(int(t.EntryBar) - 2, D(str(t.EntryPrice))) for t in stats._trades.itertuples()]
    return fills[0] if fills and fills[0][0] < len(bars) else None


CROSS_CHECKED = [
    (stop_limit(Side.BUY, "102", "103"), [bar("100", "102.5", "99", "101")]),
    (stop_limit(Side.BUY, "102", "101.5"),
     [bar("100", "102.5", "99", "101"), bar("102", "102.2", "101", "101.8")]),
    (stop_limit(Side.BUY, "102", "102"),
     [bar("100", "102.5", "99", "101"), bar("102", "102.2", "101", "101.8")]),
    (stop_limit(Side.BUY, "102", "103"),
     [bar("104", "105", "103.5", "104"), bar("104", "104.5", "102.9", "103")]),
    (stop_limit(Side.SELL, "98", "97.5"), [bar("100", "100", "97", "97.2")]),
    (limit(Side.BUY, "99"), [FLAT, bar("100", "101", "98.5", "100.5")]),
    (limit(Side.BUY, "99"), [bar("97", "98", "96", "97")]),
    (stop(Side.SELL, "98"), [FLAT, bar("95", "96", "94", "95")]),
    (stop(Side.BUY, "102"), [bar("103", "104", "102.5", "103")]),
]


@pytest.mark.parametrize(("order", "bars"), CROSS_CHECKED)
def test_fills_agree_with_backtesting_py(order: Resting, bars: list[B]) -> None:
    expected = first_fill(order, bars)
    assert expected is not None
    assert backtesting_fill(bars, order) == expected


def test_a_gapped_stop_limit_fills_on_the_bar_backtesting_py_does_never_better_than_the_open(
) -> None:
    # backtesting.py 0.6 fills it at the stop, 102, on a bar that opened at 104 and
    # never traded under 102.8; tickrun fills the same bar at the limit, 103.
    order, bars = stop_limit(Side.BUY, "102", "103"), [bar("104", "105", "102.8", "104")]
    assert backtesting_fill(bars, order) == (0, D(102))
    assert first_fill(order, bars) == (0, D(103))
