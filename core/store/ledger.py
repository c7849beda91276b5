"""A run's ledger: its portfolio, trades, positions and decisions, and the step checkpoint.

Every write of a runner is fenced by its attempt (`fence`): once a newer runner took
the run, the old one's writes are refused with Superseded and change nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any

from core.errors import NotFound, Superseded
from core.records import Decision, Portfolio, PositionRecord, Trade, TradeStatus
from core.store import codec
from core.store.ledger_tx import LedgerTx, SqlLedgerTx
from core.store.sqlbase import Cursor, SqlAccess, insert_row, utcnow

# A run's rows besides its portfolio, children first (retention deletes them).
RUN_LEDGER_TABLES = ("positions", "trades", "order_events", "orders", "decisions")


class LedgerStore(ABC):
    @abstractmethod
    def ledger_tx(self, run_id: int, *,
                  attempt: int | None = None) -> AbstractContextManager[LedgerTx]: ...

    @abstractmethod
    def get_portfolio(self, run_id: int) -> Portfolio: ...

    @abstractmethod
    def list_trades(self, run_id: int, *, after_id: int = 0, limit: int = 1000,
                    status: TradeStatus | None = None) -> list[Trade]:
        """A keyset page, oldest first: trades with id > after_id (of `status` only, if
        given: filtered before the limit), at most `limit`."""

    @abstractmethod
    def recent_trades(self, run_id: int, limit: int) -> list[Trade]:
        """The run's newest `limit` trades, newest first: one read of at most `limit`
        rows however long the run is."""

    @abstractmethod
    def step_trades(self, run_id: int, step: int) -> list[Trade]:
        """The trades of one step, in seq order."""

    def iter_trades(self, run_id: int, *, page: int = 1000) -> Iterator[Trade]:
        """Every trade of the run, oldest first, read one keyset page at a time so that
        a whole-ledger pass (the final result) never holds the ledger in memory."""
        after_id = 0
        while batch := self.list_trades(run_id, after_id=after_id, limit=page):
            yield from batch
            after_id = batch[-1].id

    @abstractmethod
    def list_positions(self, run_id: int, *, limit: int = 1000) -> list[PositionRecord]:
        """The portfolio after each filled trade, in the order the ledger applied them."""

    @abstractmethod
    def list_decisions(self, run_id: int, *, after_step: int = -1,
                       limit: int = 1000) -> list[Decision]: ...

    def iter_decisions(self, run_id: int, *, page: int = 1000) -> Iterator[Decision]:
        """Every decision of the run in step order, one keyset page at a time."""
        after_step = -1
        while batch := self.list_decisions(run_id, after_step=after_step, limit=page):
            yield from batch
            after_step = batch[-1].step

    @abstractmethod
    def get_decision(self, run_id: int, step: int) -> Decision | None: ...

    @abstractmethod
    def record_decision(self, decision: Decision, *, attempt: int | None = None) -> Decision:
        """Insert the decision of a step; if one exists (a replayed step) return it. A
        decision recorded `completed` (a step that trades nothing) is its step's
        checkpoint too: steps_done moves in the same transaction."""

    @abstractmethod
    def complete_step(self, run_id: int, step: int, *, equity: Decimal, cash: Decimal,
                      attempt: int | None = None) -> None:
        """Checkpoint: the step's decision is complete and steps_done = step + 1."""


def require_attempt(run_id: int, row: codec.Row, attempt: int | None) -> None:
    """The fencing rule itself: a runner's attempt must still be the run's newest."""
    if attempt is not None and int(row["attempts"]) != attempt:
        raise Superseded(run_id, attempt)


def fence(db: SqlAccess, cur: Cursor, run_id: int, attempt: int | None) -> None:
    """Refuse a superseded runner's write. The row stays share-locked until the write
    commits, so a newer runner's start_attempt waits for it instead of racing it."""
    if attempt is None:
        return
    row = cur.one(f"SELECT attempts FROM runs WHERE id = %s{db.dialect.for_share}",
                  (run_id,))
    if row is None:
        raise NotFound(f"run {run_id} not found")
    require_attempt(run_id, row, attempt)


def _checkpoint(cur: Cursor, run_id: int, step: int) -> None:
    cur.run("UPDATE runs SET steps_done = %s WHERE id = %s AND steps_done <= %s",
            (step + 1, run_id, step))


class LedgerSql(SqlAccess, LedgerStore):
    @contextmanager
    def ledger_tx(self, run_id: int, *, attempt: int | None = None) -> Iterator[LedgerTx]:
        with self._tx(write=True) as cur:
            fence(self, cur, run_id, attempt)
            row = cur.one(
                f"SELECT * FROM portfolios WHERE run_id = %s{self.dialect.for_update}",
                (run_id,),
            )
            if row is None:
                raise NotFound(f"run {run_id} has no portfolio")
            yield SqlLedgerTx(cur, self.dialect, codec.record_from(Portfolio, row),
                              int(row.get("bars_done", -1)))

    def get_portfolio(self, run_id: int) -> Portfolio:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM portfolios WHERE run_id = %s", (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} has no portfolio")
        return codec.record_from(Portfolio, row)

    def _trades(self, where: str, *params: Any) -> list[Trade]:
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM trades WHERE {where}", params)
        return [codec.record_from(Trade, r) for r in rows]

    def list_trades(self, run_id: int, *, after_id: int = 0, limit: int = 1000,
                    status: TradeStatus | None = None) -> list[Trade]:
        # Ordered by the keyset itself (id), so that a page after `after_id` never skips
        # or repeats a trade. One run's trades are inserted under its portfolio lock, so
        # id order is the order the ledger applied them: a session's (step, seq) order.
        if status is None:
            return self._trades("run_id = %s AND id > %s ORDER BY id LIMIT %s",
                                run_id, after_id, limit)
        return self._trades("run_id = %s AND id > %s AND status = %s ORDER BY id LIMIT %s",
                            run_id, after_id, status.value, limit)

    def recent_trades(self, run_id: int, limit: int) -> list[Trade]:
        return self._trades("run_id = %s ORDER BY id DESC LIMIT %s", run_id, limit)

    def step_trades(self, run_id: int, step: int) -> list[Trade]:
        return self._trades("run_id = %s AND step = %s ORDER BY seq", run_id, step)

    def list_positions(self, run_id: int, *, limit: int = 1000) -> list[PositionRecord]:
        with self._tx() as cur:
            rows = cur.all(
                # id: the order the ledger applied them in (a resting order's fill
                # keeps the step it was decided on, which may be long before).
                "SELECT * FROM positions WHERE run_id = %s ORDER BY id LIMIT %s",
                (run_id, limit),
            )
        return [codec.record_from(PositionRecord, r) for r in rows]

    def list_decisions(self, run_id: int, *, after_step: int = -1,
                       limit: int = 1000) -> list[Decision]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM decisions WHERE run_id = %s AND step > %s ORDER BY step LIMIT %s",
                (run_id, after_step, limit),
            )
        return [codec.record_from(Decision, r) for r in rows]

    def get_decision(self, run_id: int, step: int) -> Decision | None:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM decisions WHERE run_id = %s AND step = %s",
                          (run_id, step))
        return None if row is None else codec.record_from(Decision, row)

    def record_decision(self, decision: Decision, *, attempt: int | None = None) -> Decision:
        x = decision
        values = codec.fields_of(x, decided_at=x.decided_at or utcnow())
        with self._tx(write=True) as cur:
            fence(self, cur, x.run_id, attempt)
            row = insert_row(cur, self.dialect, "decisions", values,
                         "ON CONFLICT (run_id, step) DO NOTHING RETURNING *")
            if row is None:
                row = cur.one("SELECT * FROM decisions WHERE run_id = %s AND step = %s",
                              (x.run_id, x.step))
            elif x.completed:  # recorded with its checkpoint: the step is done
                _checkpoint(cur, x.run_id, x.step)
        assert row is not None
        return codec.record_from(Decision, row)

    def complete_step(self, run_id: int, step: int, *, equity: Decimal, cash: Decimal,
                      attempt: int | None = None) -> None:
        d = self.dialect
        with self._tx(write=True) as cur:
            fence(self, cur, run_id, attempt)
            cur.run(
                "UPDATE decisions SET completed = %s, equity = %s, cash = %s"
                " WHERE run_id = %s AND step = %s",
                (True, d.money(equity), d.money(cash), run_id, step),
            )
            _checkpoint(cur, run_id, step)
