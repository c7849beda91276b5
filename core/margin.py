"""Margin rules for short positions: pure functions of a portfolio and prices.

A short sale borrows shares and sells them: cash goes up by the proceeds, holdings go
negative, and equity (cash + sum of quantity x price) is unchanged by the sale itself.
tickrun applies the two rules of a US margin account to shorts (the run's settings):

- initial margin (Reg T: 50%): a short (opening or adding) is refused when, after it,
  equity < initial_margin x short value, the short value being the sum of
  |quantity| x price over the short positions (the fill price for the symbol traded,
  the latest prices for the others);
- maintenance margin (30% by default: FINRA rule 4210 asks 30% of a short's value for
  stocks of $5 and more, and brokers' house rules rarely ask less): at each bar's close,
  when equity < maintenance_margin x short value, every short is covered at that close
  (a margin call, as a broker liquidates an account it cannot call for funds).

Longs stay a cash account: a buy is paid from the cash not held against shorts
(cash - short value), because a short sale's proceeds stay with the broker as its
collateral. Covering is never refused for cash: it only lowers the risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from core.records import Portfolio

# The reason of every cover a margin call makes starts so (results count them).
MARGIN_CALL = "margin call"


def marks(holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """A price for each held symbol; a symbol without one is marked at zero (a run
    holds only its own symbols, which always have one)."""
    return {s: prices.get(s, Decimal(0)) for s in holdings}


def short_value(portfolio: Portfolio, prices: Mapping[str, Decimal]) -> Decimal:
    """The market value of the short positions, a positive number."""
    return sum((-q * prices.get(s, Decimal(0)) for s, q in portfolio.holdings.items() if q < 0),
               Decimal(0))


def equity(portfolio: Portfolio, prices: Mapping[str, Decimal]) -> Decimal:
    return portfolio.equity(marks(portfolio.holdings, prices))


def free_cash(portfolio: Portfolio, prices: Mapping[str, Decimal]) -> Decimal:
    """What a long purchase may spend: cash less the short-sale proceeds held as
    collateral (the shorts' value now)."""
    return portfolio.cash - short_value(portfolio, prices)


def initial_margin_refusal(after: Portfolio, prices: Mapping[str, Decimal],
                           rate: Decimal) -> str | None:
    """Why the portfolio a short would leave breaks the initial margin; None if not."""
    shorts = short_value(after, prices)
    need = rate * shorts
    value = equity(after, prices)
    if value < need:
        return (f"equity after it {value:.2f} < initial margin {rate} x short value "
                f"{shorts:.2f} = {need:.2f}")
    return None


def maintenance_call(portfolio: Portfolio, prices: Mapping[str, Decimal],
                     rate: Decimal) -> str | None:
    """The margin call's reason when equity is under the maintenance margin at these
    prices (a bar's close); None when the account is in good standing."""
    shorts = short_value(portfolio, prices)
    if shorts == 0:
        return None
    need = rate * shorts
    value = equity(portfolio, prices)
    if value < need:
        return (f"{MARGIN_CALL}: equity {value:.2f} < maintenance margin {rate} x short "
                f"value {shorts:.2f} = {need:.2f}; shorts covered at the close")
    return None
