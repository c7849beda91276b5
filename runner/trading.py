"""TradingService: every order is one transaction on the run's ledger.

Lock the portfolio, validate, write the trade and the new portfolio, all or nothing;
concurrent orders on one run serialize on the lock and can never overdraw. A refusal
is a result with a reason, recorded like a fill, because the agent must see it.
Trades are keyed by (run, step, seq): replaying a step after a crash returns the trade
already made instead of trading twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from decimal import Decimal

from core.records import (
    Order,
    OrderType,
    Portfolio,
    PositionRecord,
    Side,
    Trade,
    TradeStatus,
)
from core.store import LedgerTx, Store

log = logging.getLogger(__name__)


class TradingService:
    def __init__(self, store: Store, *, fee_per_trade: Decimal = Decimal(0),
                 attempt: int | None = None) -> None:
        self.store = store
        self.fee_per_trade = fee_per_trade
        self.attempt = attempt  # fences the ledger: see Store.transition

    def execute(self, run_id: int, step: int, seq: int, order: Order, *, price: Decimal,
                bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                reasoning: str | None = None) -> Trade:
        """Trade `order`, decided on the bar of `bar_time`, at `price`: the price of the
        bar at `filled_at` (by default the decision bar itself, as under the close rule)."""
        fill_time = bar_time if filled_at is None else filled_at
        with self.store.ledger_tx(run_id, attempt=self.attempt) as tx:
            done = tx.find_trade(step, seq)
            if done is not None:
                log.info("step %s seq %s already traded; replay returns it", step, seq)
                return done
            refusal = self._refusal(tx.portfolio, order, price)
            if refusal is not None:  # it never filled: no fill time
                return self._record(tx, step, seq, order, price, bar_time, None, reasoning,
                                    TradeStatus.REFUSED, refusal, tx.portfolio)
            after = self._apply(tx.portfolio, order, price)
            trade = self._record(tx, step, seq, order, price, bar_time, fill_time, reasoning,
                                 TradeStatus.FILLED, None, after)
            tx.save_portfolio(after)
            tx.insert_position(PositionRecord(
                run_id=run_id, step=step, seq=seq, bar_time=bar_time, filled_at=fill_time,
                action=order.side, symbol=order.symbol, cash=after.cash,
                holdings=after.holdings, reasoning=reasoning,
            ))
            return trade

    def close_all(self, run_id: int, step: int, first_seq: int, prices: Mapping[str, Decimal],
                  *, bar_time: dt.datetime, filled_at: dt.datetime | None = None,
                  reasoning: str | None = None) -> list[Trade]:
        """Sell every long position at the given prices (seq numbers from first_seq)."""
        held = self.store.get_portfolio(run_id).holdings
        trades = []
        for i, (symbol, qty) in enumerate(sorted(held.items())):
            if qty > 0:
                order = Order(Side.SELL, symbol, qty)
                trades.append(self.execute(run_id, step, first_seq + i, order,
                                           price=prices[symbol], bar_time=bar_time,
                                           filled_at=filled_at, reasoning=reasoning))
        return trades

    def _refusal(self, portfolio: Portfolio, order: Order, price: Decimal) -> str | None:
        if order.quantity <= 0:
            return f"quantity must be positive, got {order.quantity}"
        if price <= 0:
            return f"no valid price for {order.symbol}"
        if order.type is not OrderType.MARKET:
            return f"{order.type.value} orders are not supported yet"
        if order.side in (Side.SHORT, Side.COVER):
            return f"{order.side.value} is not supported yet"
        if order.side is Side.BUY:
            cost = order.quantity * price + self.fee_per_trade
            if portfolio.cash < cost:
                return (f"insufficient cash: {order.quantity} x {price} + fees "
                        f"{self.fee_per_trade} = {cost} > cash {portfolio.cash}")
        elif portfolio.held(order.symbol) < order.quantity:
            return (f"insufficient holdings: selling {order.quantity} {order.symbol}, "
                    f"holding {portfolio.held(order.symbol)}")
        return None

    def _apply(self, portfolio: Portfolio, order: Order, price: Decimal) -> Portfolio:
        holdings = dict(portfolio.holdings)
        notional = order.quantity * price
        if order.side is Side.BUY:
            cash = portfolio.cash - notional - self.fee_per_trade
            holdings[order.symbol] = portfolio.held(order.symbol) + order.quantity
        else:
            cash = portfolio.cash + notional - self.fee_per_trade
            holdings[order.symbol] = portfolio.held(order.symbol) - order.quantity
        holdings = {s: q for s, q in holdings.items() if q != 0}
        return Portfolio(run_id=portfolio.run_id, cash=cash, holdings=holdings)

    def _record(self, tx: LedgerTx, step: int, seq: int, order: Order, price: Decimal,
                bar_time: dt.datetime, filled_at: dt.datetime | None, reasoning: str | None,
                status: TradeStatus, reason: str | None, after: Portfolio) -> Trade:
        return tx.insert_trade(
            step=step, seq=seq, bar_time=bar_time, filled_at=filled_at, side=order.side,
            symbol=order.symbol, quantity=order.quantity, price=price,
            fees=self.fee_per_trade if status is TradeStatus.FILLED else Decimal(0),
            status=status, reason=reason, cash_after=after.cash, reasoning=reasoning,
        )
