"""Margin rules of short positions (core.margin), hand-computed."""

from __future__ import annotations

from decimal import Decimal

from core import margin
from core.records import Portfolio

D = Decimal


def test_a_short_sale_leaves_equity_unchanged_and_its_value_counts_against_it() -> None:
    # 10,000 cash; short 100 at 50: cash 15,000, holdings -100.
    short = Portfolio(1, D(15_000), {"AAPL": D(-100)})
    assert margin.short_value(short, {"AAPL": D(50)}) == D(5000)
    assert margin.equity(short, {"AAPL": D(50)}) == D(10_000)
    # The price rises to 90: equity 15,000 - 9,000 = 6,000.
    assert margin.equity(short, {"AAPL": D(90)}) == D(6000)
    # Long purchases may spend only the cash not held against the shorts.
    assert margin.free_cash(short, {"AAPL": D(90)}) == D(6000)


def test_the_initial_margin_refuses_a_short_the_equity_cannot_carry() -> None:
    rate = D("0.5")
    # Short another 100 at 90 after the rise: cash 24,000, short 200 x 90 = 18,000,
    # equity 6,000 < 0.5 x 18,000 = 9,000.
    after = Portfolio(1, D(24_000), {"AAPL": D(-200)})
    why = margin.initial_margin_refusal(after, {"AAPL": D(90)}, rate)
    assert why == ("equity after it 6000.00 < initial margin 0.5 x short value 18000.00 "
                   "= 9000.00")
    # At 50 the same position is fine: equity 14,000 >= 0.5 x 10,000.
    assert margin.initial_margin_refusal(after, {"AAPL": D(50)}, rate) is None


def test_the_maintenance_margin_calls_at_the_close() -> None:
    rate = D("0.3")
    short = Portfolio(1, D(15_000), {"AAPL": D(-100)})
    # Equity 15,000 - 100 x close >= 0.3 x 100 x close while close <= 115.38...
    assert margin.maintenance_call(short, {"AAPL": D(115)}, rate) is None
    why = margin.maintenance_call(short, {"AAPL": D(120)}, rate)
    assert why is not None and why.startswith(margin.MARGIN_CALL)
    assert "equity 3000.00 < maintenance margin 0.3 x short value 12000.00 = 3600.00" in why
    # No short, no call, whatever the price.
    assert margin.maintenance_call(Portfolio(1, D(1), {"AAPL": D(5)}), {"AAPL": D(1)},
                                   rate) is None
