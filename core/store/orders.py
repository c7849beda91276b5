"""A run's orders and their state changes, as the API and the result read them.

They are written in a ledger transaction (core.store.ledger_tx), with the trade that
fills them; a run's final status cancels those still open (core.store.run_status).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import Any

from core.records import OrderEvent, OrderOrigin, OrderRecord, OrderState
from core.store import codec
from core.store.ledger_tx import ORDER_COLUMNS
from core.store.sqlbase import SqlAccess


class OrderStore(ABC):
    @abstractmethod
    def list_orders(self, run_id: int, *, state: OrderState | None = None,
                    after_id: int = 0, limit: int = 1000,
                    ids: Collection[int] | None = None) -> list[OrderRecord]:
        """A keyset page of the run's orders, oldest first: ids > after_id, of `state`
        only if given (filtered before the limit), of `ids` only if given."""

    def open_orders(self, run_id: int, *, limit: int = 1000) -> list[OrderRecord]:
        """The run's open orders (its book), oldest first."""
        return self.list_orders(run_id, state=OrderState.OPEN, limit=limit)

    @abstractmethod
    def step_orders(self, run_id: int, step: int) -> list[OrderRecord]:
        """The orders the decider made at `step` (its own, not the engine's), in seq
        order."""

    @abstractmethod
    def list_order_events(self, run_id: int, *, order_id: int | None = None,
                          step: int | None = None, after_id: int = 0,
                          limit: int = 1000) -> list[OrderEvent]:
        """A keyset page of the run's order state changes, oldest first; of one order,
        or of the changes made while one step was played, if given."""

    @abstractmethod
    def count_orders(self, run_id: int) -> dict[OrderState, int]:
        """The run's orders counted by state (states with none are absent)."""


class OrdersSql(SqlAccess, OrderStore):
    def _orders(self, where: str, params: list[Any], tail: str) -> list[OrderRecord]:
        with self._tx() as cur:
            rows = cur.all(f"SELECT {ORDER_COLUMNS} FROM orders o WHERE {where} {tail}",
                           params)
        return [codec.record_from(OrderRecord, r) for r in rows]

    def list_orders(self, run_id: int, *, state: OrderState | None = None,
                    after_id: int = 0, limit: int = 1000,
                    ids: Collection[int] | None = None) -> list[OrderRecord]:
        where, params = "o.run_id = %s AND o.id > %s", [run_id, after_id]  # type: str, list[Any]
        if state is not None:
            where += " AND o.state = %s"
            params.append(state.value)
        if ids is not None:
            if not ids:
                return []
            wanted = sorted(int(i) for i in ids)
            where += f" AND o.id IN ({codec.marks(len(wanted))})"
            params.extend(wanted)
        return self._orders(where, [*params, limit], "ORDER BY o.id LIMIT %s")

    def step_orders(self, run_id: int, step: int) -> list[OrderRecord]:
        return self._orders("o.run_id = %s AND o.step = %s AND o.origin = %s",
                            [run_id, step, OrderOrigin.DECIDER.value], "ORDER BY o.seq")

    def list_order_events(self, run_id: int, *, order_id: int | None = None,
                          step: int | None = None, after_id: int = 0,
                          limit: int = 1000) -> list[OrderEvent]:
        where, params = "run_id = %s AND id > %s", [run_id, after_id]  # type: str, list[Any]
        for column, value in (("order_id", order_id), ("step", step)):
            if value is not None:
                where += f" AND {column} = %s"
                params.append(value)
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM order_events WHERE {where} ORDER BY id LIMIT %s",
                           (*params, limit))
        return [codec.record_from(OrderEvent, r) for r in rows]

    def count_orders(self, run_id: int) -> dict[OrderState, int]:
        with self._tx() as cur:
            rows = cur.all("SELECT state, COUNT(*) AS n FROM orders WHERE run_id = %s"
                           " GROUP BY state", (run_id,))
        return {OrderState(r["state"]): int(r["n"]) for r in rows}
