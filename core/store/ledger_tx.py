"""One transaction on a run's ledger: its trades, positions, portfolio and orders.

The runner's TradingService does all of a step's money moves through one LedgerTx, so a
trade, its order's change, their events and the new portfolio commit together or not at
all. Rows are written from the records' fields (core.store.codec).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from core.records import (
    Order,
    OrderEvent,
    OrderOrigin,
    OrderRecord,
    OrderState,
    Portfolio,
    PositionRecord,
    Side,
    Trade,
    TradeStatus,
)
from core.store import codec
from core.store.sqlbase import Cursor, Dialect, insert_row, utcnow

# An order with its trade's id (a filled or refused order has one trade at most).
ORDER_COLUMNS = "o.*, (SELECT t.id FROM trades t WHERE t.order_id = o.id) AS trade_id"
ORDER_RETURNING = "RETURNING *, NULL AS trade_id"
FIND_TRADE = "SELECT * FROM trades WHERE run_id = %s AND step = %s AND seq = %s"
# PostgreSQL: the id the order inserted just before took (the session's last one): a
# trade and its order go out together, not one answer after the other.
LAST_ORDER_ID = "currval(pg_get_serial_sequence('orders', 'id'))"


class LedgerTx(ABC):
    """One transaction on a run's ledger: the run's portfolio row is locked for its whole
    life, so the run's trades, orders and their events are written one transaction at a
    time, and a write of a superseded attempt is refused (Superseded) before it starts.

    Order writes do not write their events: `add_order_events` does, in the same
    transaction, one round trip for all of a change's events."""

    portfolio: Portfolio
    # The last step whose bar the resting orders and the margin were settled on (-1:
    # none yet): a step played again after a crash settles its bar once.
    bars_done: int

    @abstractmethod
    def find_trade(self, step: int, seq: int) -> Trade | None: ...

    @abstractmethod
    def insert_trade(
        self,
        *,
        step: int,
        seq: int,
        bar_time: dt.datetime,
        filled_at: dt.datetime | None,
        side: Side,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        fees: Decimal,
        status: TradeStatus,
        reason: str | None,
        cash_after: Decimal,
        reasoning: str | None,
        order_id: int | None = None,
        rule_price: Decimal | None = None,
    ) -> Trade: ...

    def insert_order_and_trade(self, order: dict[str, Any], trade: dict[str, Any]
                               ) -> tuple[OrderRecord, Trade]:
        """A new order (insert_order's arguments) and its trade (insert_trade's, but
        the order's id): together, in one round trip where the store can."""
        rec = self.insert_order(**order)
        return rec, self.insert_trade(**trade, order_id=rec.id)

    @abstractmethod
    def save_portfolio(self, portfolio: Portfolio) -> None: ...

    @abstractmethod
    def insert_position(self, position: PositionRecord) -> None: ...

    # -- orders ----------------------------------------------------------------------
    @abstractmethod
    def find_order(self, step: int, seq: int) -> OrderRecord | None:
        """The order keyed (run, step, seq), if it was placed."""

    @abstractmethod
    def get_order(self, order_id: int) -> OrderRecord | None:
        """The run's order of that id; None for none (or another run's)."""

    @abstractmethod
    def open_orders(self) -> list[OrderRecord]:
        """The run's open orders, in placement (id) order."""

    @abstractmethod
    def step_orders(self, step: int) -> list[OrderRecord]:
        """Every order decided at `step` (the decider's and the engine's), by seq."""

    @abstractmethod
    def insert_order(
        self,
        *,
        step: int,
        seq: int,
        bar_time: dt.datetime,
        active_from: int,
        order: Order,
        origin: OrderOrigin,
        state: OrderState,
        parent_id: int | None = None,
        reason: str | None = None,
        filled_at: dt.datetime | None = None,
        fill_price: Decimal | None = None,
        reasoning: str | None = None,
    ) -> OrderRecord: ...

    @abstractmethod
    def update_order(
        self,
        order_id: int,
        *,
        state: OrderState | None = None,
        reason: str | None = None,
        triggered_at: dt.datetime | None = None,
        filled_at: dt.datetime | None = None,
        fill_price: Decimal | None = None,
    ) -> OrderRecord | None:
        """Change an open order (its state, its trigger); None, changing nothing, when
        it is not open (a replay finds it done). Fields left None stay as they are; the
        record returned has no trade_id (the caller knows the trade it wrote)."""

    @abstractmethod
    def add_order_events(self, events: Sequence[OrderEvent]) -> None: ...

    @abstractmethod
    def mark_bars_done(self, step: int) -> None:
        """The bar of `step` is settled (see bars_done)."""


class SqlLedgerTx(LedgerTx):
    def __init__(self, cur: Cursor, dialect: Dialect, portfolio: Portfolio,
                 bars_done: int = -1) -> None:
        self._cur = cur
        self._d = dialect
        self.portfolio = portfolio
        self.bars_done = bars_done
        self._known: tuple[tuple[int, int], Trade | None] | None = None

    def _insert(self, table: str, values: dict[str, Any], tail: str = "") -> codec.Row:
        row = insert_row(self._cur, self._d, table, values, tail)
        assert row is not None
        return row

    def known_trade(self, key: tuple[int, int], row: codec.Row | None) -> None:
        """The trade of `key` (step, seq) as read with the lock: find_trade's answer."""
        self._known = (key, None if row is None else codec.record_from(Trade, row))

    def find_trade(self, step: int, seq: int) -> Trade | None:
        known, self._known = self._known, None  # answered once: later writes may change it
        if known is not None and known[0] == (step, seq):
            return known[1]
        row = self._cur.one(FIND_TRADE, (self.portfolio.run_id, step, seq))
        return None if row is None else codec.record_from(Trade, row)

    def _trade_values(self, **fields: Any) -> dict[str, Any]:
        trade = Trade(id=0, run_id=self.portfolio.run_id, created_at=utcnow(),
                      **{"order_id": None, "rule_price": None, **fields})
        return codec.fields_of(trade, skip=("id",))

    def insert_trade(self, *, step: int, seq: int, bar_time: dt.datetime,
                     filled_at: dt.datetime | None, side: Side, symbol: str,
                     quantity: Decimal, price: Decimal, fees: Decimal, status: TradeStatus,
                     reason: str | None, cash_after: Decimal, reasoning: str | None,
                     order_id: int | None = None,
                     rule_price: Decimal | None = None) -> Trade:
        values = self._trade_values(
            step=step, seq=seq, bar_time=bar_time, filled_at=filled_at, side=side,
            symbol=symbol, quantity=quantity, price=price, fees=fees, status=status,
            reason=reason, cash_after=cash_after, reasoning=reasoning, order_id=order_id,
            rule_price=rule_price)
        row = self._insert("trades", values, "RETURNING *")
        return codec.record_from(Trade, row)

    def insert_order_and_trade(self, order: dict[str, Any], trade: dict[str, Any]
                               ) -> tuple[OrderRecord, Trade]:
        if not self._d.chains_writes:  # SQLite: in process, nothing to gain
            return super().insert_order_and_trade(order, trade)
        order_values = self._order_values(**order)
        values = self._trade_values(**trade)
        del values["order_id"]
        names = [*values, "order_id"]
        trade_sql = (f"INSERT INTO trades ({', '.join(names)})"
                     f" VALUES ({codec.marks(len(values))}, {LAST_ORDER_ID}) RETURNING *")
        order_row, trade_row = self._cur.one_each([
            (codec.insert("orders", order_values, ORDER_RETURNING),
             codec.columns(self._d, order_values)),
            (trade_sql, codec.columns(self._d, values))])
        assert order_row is not None and trade_row is not None
        return (codec.record_from(OrderRecord, order_row),
                codec.record_from(Trade, trade_row))

    # The writes below are answered by nobody: they go out with the commit (`later`).
    def save_portfolio(self, portfolio: Portfolio) -> None:
        self._cur.later(
            "UPDATE portfolios SET cash = %s, holdings = %s WHERE run_id = %s",
            (self._d.money(portfolio.cash), self._d.json(codec.holdings_to(portfolio.holdings)),
             portfolio.run_id),
        )
        self.portfolio = portfolio

    def insert_position(self, position: PositionRecord) -> None:
        values = codec.fields_of(position, holdings=codec.holdings_to(position.holdings))
        self._cur.later(codec.insert("positions", values), codec.columns(self._d, values))

    # -- orders ----------------------------------------------------------------------
    def _order(self, where: str, *params: Any) -> OrderRecord | None:
        row = self._cur.one(f"SELECT {ORDER_COLUMNS} FROM orders o WHERE {where}", params)
        return None if row is None else codec.record_from(OrderRecord, row)

    def _orders(self, where: str, *params: Any) -> list[OrderRecord]:
        rows = self._cur.all(f"SELECT {ORDER_COLUMNS} FROM orders o WHERE {where}", params)
        return [codec.record_from(OrderRecord, r) for r in rows]

    def find_order(self, step: int, seq: int) -> OrderRecord | None:
        return self._order("o.run_id = %s AND o.step = %s AND o.seq = %s",
                           self.portfolio.run_id, step, seq)

    def get_order(self, order_id: int) -> OrderRecord | None:
        return self._order("o.id = %s AND o.run_id = %s", order_id, self.portfolio.run_id)

    def open_orders(self) -> list[OrderRecord]:
        rows = self._cur.all("SELECT o.*, NULL AS trade_id FROM orders o"
                             " WHERE o.run_id = %s AND o.state = 'open' ORDER BY o.id",
                             (self.portfolio.run_id,))
        return [codec.record_from(OrderRecord, r) for r in rows]

    def step_orders(self, step: int) -> list[OrderRecord]:
        return self._orders("o.run_id = %s AND o.step = %s ORDER BY o.seq",
                            self.portfolio.run_id, step)

    def insert_order(self, *, step: int, seq: int, bar_time: dt.datetime, active_from: int,
                     order: Order, origin: OrderOrigin, state: OrderState,
                     parent_id: int | None = None, reason: str | None = None,
                     filled_at: dt.datetime | None = None, fill_price: Decimal | None = None,
                     reasoning: str | None = None) -> OrderRecord:
        values = self._order_values(
            step=step, seq=seq, bar_time=bar_time, active_from=active_from, order=order,
            origin=origin, state=state, parent_id=parent_id, reason=reason,
            filled_at=filled_at, fill_price=fill_price, reasoning=reasoning)
        return codec.record_from(OrderRecord, self._insert("orders", values, ORDER_RETURNING))

    def _order_values(self, *, order: Order, parent_id: int | None = None,
                      reason: str | None = None, filled_at: dt.datetime | None = None,
                      fill_price: Decimal | None = None, reasoning: str | None = None,
                      **fields: Any) -> dict[str, Any]:
        now = utcnow()
        record = OrderRecord(
            id=0, run_id=self.portfolio.run_id, **fields, **codec.fields_of(order),
            parent_id=parent_id, reason=reason, triggered_at=None, filled_at=filled_at,
            fill_price=fill_price, reasoning=reasoning, created_at=now, updated_at=now)
        return codec.fields_of(record, skip=("id", "trade_id"))

    def update_order(self, order_id: int, *, state: OrderState | None = None,
                     reason: str | None = None, triggered_at: dt.datetime | None = None,
                     filled_at: dt.datetime | None = None,
                     fill_price: Decimal | None = None) -> OrderRecord | None:
        changes = {column: value for column, value in (
            ("state", state), ("reason", reason), ("triggered_at", triggered_at),
            ("filled_at", filled_at), ("fill_price", fill_price)) if value is not None}
        changes["updated_at"] = utcnow()
        row = self._cur.one(
            f"UPDATE orders SET {', '.join(f'{c} = %s' for c in changes)}"
            " WHERE id = %s AND run_id = %s AND state = 'open' RETURNING *",
            (*codec.columns(self._d, changes), order_id, self.portfolio.run_id))
        # trade_id: the caller knows the trade it wrote (none is read back here).
        return None if row is None else codec.record_from(OrderRecord, row, trade_id=None)

    def add_order_events(self, events: Sequence[OrderEvent]) -> None:
        if not events:
            return
        now = utcnow()
        rows = [codec.fields_of(e, skip=("id",), run_id=self.portfolio.run_id,
                                created_at=now) for e in events]
        # One statement of every row: a change's events are written together.
        self._cur.later(codec.insert("order_events", rows[0], rows=len(rows)),
                        [v for r in rows for v in codec.columns(self._d, r)])

    def mark_bars_done(self, step: int) -> None:
        self._cur.later("UPDATE portfolios SET bars_done = %s WHERE run_id = %s",
                        (step, self.portfolio.run_id))
        self.bars_done = step

