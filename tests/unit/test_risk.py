"""The risk guard (core.risk): every limit, exits always allowed, the sliding minute on
an injected clock, the New York day of the daily loss, the drawdown from the peak."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from core.records import Order, Portfolio, Side
from core.risk import Breach, RiskGuard, RiskLimits, reduces

D = Decimal
T0 = dt.datetime(2024, 3, 5, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York


def book(cash: str = "100000", **holdings: str) -> Portfolio:
    return Portfolio(run_id=1, cash=D(cash), holdings={s: D(q) for s, q in holdings.items()})


def guard(**limits: object) -> RiskGuard:
    return RiskGuard(RiskLimits.model_validate(limits))


def test_no_limits_refuse_nothing() -> None:
    g = guard()
    assert g.check_order(Order(Side.BUY, "AAPL", D(10**6)), D(500), book(), T0) is None
    assert g.check_equity(D(1), T0) is None


def test_order_notional_over_the_limit_is_refused_with_the_numbers() -> None:
    g = guard(max_order_notional="10000")
    refusal = g.check_order(Order(Side.BUY, "AAPL", D(125)), D(100), book(), T0)
    assert refusal is not None
    assert refusal.reason == ("risk limit max_order_notional: order notional 12,500.00 "
                              "over the limit 10,000.00")
    # At the limit is allowed; shorts count their notional too.
    assert g.check_order(Order(Side.BUY, "AAPL", D(100)), D(100), book(), T0) is None
    assert g.check_order(Order(Side.SHORT, "AAPL", D(101)), D(100), book(), T0) is not None


def test_position_shares_count_what_is_held() -> None:
    g = guard(max_position_shares="1000")
    assert g.check_order(Order(Side.BUY, "AAPL", D(200)), D(10), book(AAPL="800"), T0) is None
    refusal = g.check_order(Order(Side.BUY, "AAPL", D(201)), D(10), book(AAPL="800"), T0)
    assert refusal is not None and refusal.reason == (
        "risk limit max_position_shares: position in AAPL after it 1,001 shares over the "
        "limit 1,000")
    # Another symbol's position is its own.
    assert g.check_order(Order(Side.BUY, "MSFT", D(1000)), D(10), book(AAPL="800"), T0) is None


def test_position_notional_per_symbol() -> None:
    g = guard(max_position_notional="50000")
    refusal = g.check_order(Order(Side.BUY, "AAPL", D(100)), D(250), book(AAPL="150"), T0)
    assert refusal is not None and refusal.reason == (
        "risk limit max_position_notional: position in AAPL after it 62,500.00 over the "
        "limit 50,000.00")
    assert g.check_order(Order(Side.BUY, "AAPL", D(50)), D(250), book(AAPL="150"), T0) is None


def test_shorts_are_limited_by_their_absolute_size() -> None:
    g = guard(max_position_shares="1000", max_position_notional="20000")
    refusal = g.check_order(Order(Side.SHORT, "AAPL", D(300)), D(10), book(AAPL="-800"), T0)
    assert refusal is not None and "after it 1,100 shares over the limit 1,000" in \
        refusal.reason
    refusal = g.check_order(Order(Side.SHORT, "AAPL", D(100)), D(25), book(AAPL="-800"), T0)
    assert refusal is not None and "after it 22,500.00 over the limit 20,000.00" in \
        refusal.reason
    assert g.check_order(Order(Side.SHORT, "AAPL", D(200)), D(10), book(AAPL="-800"), T0) is None


@pytest.mark.parametrize(("side", "held"), [(Side.SELL, "5000"), (Side.COVER, "-5000")])
def test_an_order_that_reduces_a_position_is_never_refused(side: Side, held: str) -> None:
    # Every limit is already broken by the position; getting out must stay possible.
    g = guard(max_order_notional="1", max_position_shares="1", max_position_notional="1",
              max_orders_per_minute=1)
    g.record_order(T0)
    for quantity in ("1", "4000", "5000"):
        order = Order(side, "AAPL", D(quantity))
        assert g.check_order(order, D(100), book(AAPL=held), T0) is None
    # More than the position is no longer only an exit: it is checked.
    assert g.check_order(Order(side, "AAPL", D(5001)), D(100), book(AAPL=held), T0) is not None


def test_reduces() -> None:
    assert reduces(Order(Side.SELL, "A", D(3)), D(3))
    assert not reduces(Order(Side.SELL, "A", D(4)), D(3))
    assert not reduces(Order(Side.SELL, "A", D(1)), D(-3))
    assert reduces(Order(Side.COVER, "A", D(3)), D(-3))
    assert not reduces(Order(Side.COVER, "A", D(1)), D(0))
    assert not reduces(Order(Side.BUY, "A", D(1)), D(-3))
    assert not reduces(Order(Side.SHORT, "A", D(1)), D(3))


def test_orders_per_minute_slide_with_the_injected_clock() -> None:
    g = guard(max_orders_per_minute=3)
    buy = Order(Side.BUY, "AAPL", D(1))
    for seconds in (0, 20, 40):
        now = T0 + dt.timedelta(seconds=seconds)
        assert g.check_order(buy, D(10), book(), now) is None
        g.record_order(now)
    refusal = g.check_order(buy, D(10), book(), T0 + dt.timedelta(seconds=59))
    assert refusal is not None and refusal.reason == (
        "risk limit max_orders_per_minute: 3 orders in the last minute, at the limit 3")
    # A minute after the first order, it no longer counts.
    assert g.check_order(buy, D(10), book(), T0 + dt.timedelta(seconds=60)) is None
    g.record_order(T0 + dt.timedelta(seconds=60))
    assert g.check_order(buy, D(10), book(), T0 + dt.timedelta(seconds=61)) is not None
    assert g.check_order(buy, D(10), book(), T0 + dt.timedelta(seconds=100)) is None


def test_daily_loss_against_the_new_york_days_first_equity() -> None:
    g = guard(max_daily_loss="1000")
    assert g.check_equity(D(100000), T0) is None
    assert g.check_equity(D(99000), T0 + dt.timedelta(minutes=1)) is None  # at the limit
    breach = g.check_equity(D(98750), T0 + dt.timedelta(minutes=2))
    assert breach == Breach("max_daily_loss",
                            "risk limit max_daily_loss: daily loss 1,250.00 over the limit "
                            "1,000.00 (the day began at 100,000.00, equity now 98,750.00)")


def test_daily_loss_resets_on_a_new_new_york_day() -> None:
    g = guard(max_daily_loss="1000")
    evening = dt.datetime(2024, 3, 5, 23, 30, tzinfo=dt.UTC)  # 18:30 in New York, 5 March
    late = dt.datetime(2024, 3, 6, 3, 0, tzinfo=dt.UTC)  # 22:00 in New York, still 5 March
    assert g.check_equity(D(100000), evening) is None
    # Past midnight UTC but the same New York day: still counted from 100,000.
    assert g.check_equity(D(98500), late) is not None
    # The next New York day starts from its first equity.
    next_day = dt.datetime(2024, 3, 6, 14, 31, tzinfo=dt.UTC)
    assert g.check_equity(D(98500), next_day) is None
    assert g.check_equity(D(97600), next_day + dt.timedelta(minutes=1)) is None
    assert g.check_equity(D(97400), next_day + dt.timedelta(minutes=2)) is not None


def test_drawdown_from_the_peak() -> None:
    g = guard(max_drawdown_pct="10")
    times = [T0 + dt.timedelta(days=i) for i in range(5)]
    assert g.check_equity(D(100000), times[0]) is None
    assert g.check_equity(D(120000), times[1]) is None  # the new peak
    assert g.check_equity(D(108000), times[2]) is None  # 10% below it: at the limit
    breach = g.check_equity(D(107000), times[3])
    assert breach is not None and breach.limit == "max_drawdown_pct"
    assert breach.reason == ("risk limit max_drawdown_pct: drawdown 10.83% over the limit "
                             "10% (peak 120,000.00, equity now 107,000.00)")


def test_check_equity_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        guard().check_equity(D(1), dt.datetime(2024, 3, 5, 15, 0))


def test_limits_must_be_positive_and_known() -> None:
    for bad in ({"max_order_notional": "0"}, {"max_drawdown_pct": "101"},
                {"max_orders_per_minute": 0}, {"max_orders_per_minute": "5"},
                {"max_loss": "1"}):
        with pytest.raises(ValidationError):
            RiskLimits.model_validate(bad)
    assert RiskLimits.model_validate({"max_daily_loss": "250.5"}).max_daily_loss == D("250.5")
