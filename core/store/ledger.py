"""A run's ledger: its portfolio, trades, positions and decisions, and the step checkpoint.

Every write of a runner is fenced by its attempt: once a newer runner took the run, the
old one's writes are refused with Superseded and change nothing. The attempt check is a
condition of the writes themselves, not a query of its own: the run's row is read by the
write and share-locked until it commits, so a newer runner's start_attempt waits for the
write instead of racing it, and a write that waited for a start sees the new attempts.
On PostgreSQL a step's decision, its fence and its checkpoint are one statement (one
round trip); a trade's fence is its portfolio lock's statement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.errors import NotFound, Superseded
from core.records import Decision, Portfolio, PositionRecord, Trade, TradeStatus
from core.store import codec
from core.store.ledger_tx import FIND_TRADE, LedgerTx, SqlLedgerTx
from core.store.sqlbase import Cursor, Dialect, SqlAccess, utcnow

# A run's rows besides its portfolio, children first (retention deletes them).
RUN_LEDGER_TABLES = ("positions", "trades", "order_events", "orders", "decisions")


class LedgerStore(ABC):
    @abstractmethod
    def ledger_tx(self, run_id: int, *, attempt: int | None = None,
                  trade_key: tuple[int, int] | None = None
                  ) -> AbstractContextManager[LedgerTx]:
        """`trade_key` (step, seq): the trade its find_trade will ask for, read with the
        portfolio's lock (one round trip)."""

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


def _fenced(run_id: int, row: codec.Row | None, attempt: int | None) -> None:
    """After a fenced write whose answer `row` holds the run's attempts as the write saw
    them (none: no such run): Superseded when `attempt` was not the newest."""
    if row is None or row.get("attempts") is None:
        raise NotFound(f"run {run_id} not found")
    require_attempt(run_id, row, attempt)


def _fence_cte(d: Dialect, run_id: int, attempt: int | None) -> tuple[str, list[Any]]:
    """PostgreSQL: `fence`, the run's row as a write of `attempt` sees it, share-locked
    until the write commits (READ COMMITTED re-reads a row it waited to lock, so a write
    that waited for a newer runner's start sees its attempts), and `ok`, that row while
    the attempt owns the run. No attempt: not fenced, the row is only read."""
    if attempt is None:
        return ("fence AS (SELECT id, attempts FROM runs WHERE id = %s),"
                " ok AS (SELECT id FROM fence)", [run_id])
    return (f"fence AS (SELECT id, attempts FROM runs WHERE id = %s{d.for_share}),"
            " ok AS (SELECT id FROM fence WHERE attempts = %s)", [run_id, attempt])


# SQLite's answer for a decision inserted as given (by the attempt that owns the run).
_INSERTED: codec.Row = {}

# The fence's answer, joined with what a statement returns (`x`): one row, always.
_ANSWER = " SELECT f.attempts, x.* FROM (SELECT 1) one LEFT JOIN fence f ON TRUE"


def _decision_statement(d: Dialect, values: dict[str, Any], attempt: int | None,
                        checkpoint: bool) -> tuple[str, list[Any]]:
    """PostgreSQL: the fence, the decision's insert and (`checkpoint`) the step's
    checkpoint in one statement (data-modifying WITH). It answers the run's attempts
    and the decision: the one inserted, or the one recorded before (a replay)."""
    run_id, step = values["run_id"], values["step"]
    fence, params = _fence_cte(d, run_id, attempt)
    sql = (f"WITH {fence}, ins AS (INSERT INTO decisions ({', '.join(values)})"
           f" SELECT {codec.marks(len(values))} WHERE EXISTS (SELECT 1 FROM ok)"
           " ON CONFLICT (run_id, step) DO NOTHING RETURNING *)")
    params += codec.columns(d, values)
    if checkpoint:
        sql += (", done AS (UPDATE runs SET steps_done = %s WHERE id = %s"
                " AND steps_done <= %s AND EXISTS (SELECT 1 FROM ins))")
        params += [step + 1, run_id, step]
    sql += (_ANSWER + " LEFT JOIN (SELECT * FROM ins UNION ALL SELECT * FROM decisions"
            " WHERE run_id = %s AND step = %s AND NOT EXISTS (SELECT 1 FROM ins)) x ON TRUE")
    return sql, [*params, run_id, step]


def _complete_statement(d: Dialect, run_id: int, step: int, equity: Decimal, cash: Decimal,
                        attempt: int | None) -> tuple[str, list[Any]]:
    """PostgreSQL: the fence, the decision completed and the checkpoint in one
    statement. It answers the run's attempts."""
    fence, params = _fence_cte(d, run_id, attempt)
    sql = (f"WITH {fence}, dec AS (UPDATE decisions SET completed = TRUE, equity = %s,"
           " cash = %s WHERE run_id = %s AND step = %s AND EXISTS (SELECT 1 FROM ok)),"
           " done AS (UPDATE runs SET steps_done = %s WHERE id IN (SELECT id FROM ok)"
           " AND steps_done <= %s)"
           + _ANSWER + " LEFT JOIN (SELECT 1 AS answered) x ON TRUE")
    return sql, [*params, d.money(equity), d.money(cash), run_id, step, step + 1, step]


def _owner(attempt: int | None) -> tuple[str, list[Any]]:
    """SQLite: the condition on the run's row (`runs`) that `attempt` owns the run. In
    SQLite's write transaction, which holds the whole database, it cannot change."""
    if attempt is None:
        return "", []
    return " AND runs.attempts = %s", [attempt]


def _checkpoint(cur: Cursor, run_id: int, step: int, attempt: int | None) -> int:
    """SQLite: steps_done = step + 1 (never backwards), fenced; 0 when not the owner's."""
    owner, params = _owner(attempt)
    return cur.run("UPDATE runs SET steps_done = MAX(steps_done, %s)"
                   f" WHERE runs.id = %s{owner}", (step + 1, run_id, *params))


class LedgerSql(SqlAccess, LedgerStore):
    @contextmanager
    def ledger_tx(self, run_id: int, *, attempt: int | None = None,
                  trade_key: tuple[int, int] | None = None) -> Iterator[LedgerTx]:
        d = self.dialect
        # A batch: the writes nothing waits for go out with the commit (one round trip).
        with self._tx(write=True, batch=True) as cur:
            # The fence and the portfolio's lock in one statement: the run's row is
            # share-locked and read as it is now (after any start_attempt it waited for).
            # The trade asked for is read after it, in the same round trip.
            lock = ("SELECT p.*, r.attempts FROM portfolios p JOIN runs r ON r.id = p.run_id"
                    " WHERE p.run_id = %s" + d.lock_rows("p", "r" if attempt is not None
                                                         else None), (run_id,))
            if trade_key is None:
                row, found = cur.one(*lock), None
            else:
                row, found = cur.one_each([lock, (FIND_TRADE, (run_id, *trade_key))])
            if row is None:
                raise NotFound(f"run {run_id} has no portfolio")
            require_attempt(run_id, row, attempt)
            tx = SqlLedgerTx(cur, d, codec.record_from(Portfolio, row),
                             int(row.get("bars_done", -1)))
            if trade_key is not None:
                tx.known_trade(trade_key, found)
            yield tx

    def get_portfolio(self, run_id: int) -> Portfolio:
        with self._one_statement(write=False) as cur:
            row = cur.one("SELECT * FROM portfolios WHERE run_id = %s", (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} has no portfolio")
        return codec.record_from(Portfolio, row)

    def _trades(self, where: str, *params: Any) -> list[Trade]:
        with self._one_statement(write=False) as cur:
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
        with self._one_statement(write=False) as cur:
            rows = cur.all(
                # id: the order the ledger applied them in (a resting order's fill
                # keeps the step it was decided on, which may be long before).
                "SELECT * FROM positions WHERE run_id = %s ORDER BY id LIMIT %s",
                (run_id, limit),
            )
        return [codec.record_from(PositionRecord, r) for r in rows]

    def list_decisions(self, run_id: int, *, after_step: int = -1,
                       limit: int = 1000) -> list[Decision]:
        with self._one_statement(write=False) as cur:
            rows = cur.all(
                "SELECT * FROM decisions WHERE run_id = %s AND step > %s ORDER BY step LIMIT %s",
                (run_id, after_step, limit),
            )
        return [codec.record_from(Decision, r) for r in rows]

    def get_decision(self, run_id: int, step: int) -> Decision | None:
        with self._one_statement(write=False) as cur:
            row = cur.one("SELECT * FROM decisions WHERE run_id = %s AND step = %s",
                          (run_id, step))
        return None if row is None else codec.record_from(Decision, row)

    def record_decision(self, decision: Decision, *, attempt: int | None = None) -> Decision:
        x = decision if decision.decided_at else replace(decision, decided_at=utcnow())
        values = codec.fields_of(x)
        with self._one_statement() as cur:
            if self.dialect.chains_writes:
                row = cur.one(*_decision_statement(self.dialect, values, attempt, x.completed))
            else:
                row = self._record_decision_stepwise(cur, values, attempt, x.completed)
        if row is _INSERTED:
            return x
        _fenced(x.run_id, row, attempt)
        assert row is not None and row.get("step") is not None, "the owner's decision"
        return codec.record_from(Decision, row)

    def _record_decision_stepwise(self, cur: Cursor, values: dict[str, Any],
                                  attempt: int | None, checkpoint: bool) -> codec.Row | None:
        """SQLite: _decision_statement's writes one by one in the write transaction,
        the insert fenced by its own condition; the same answer, or _INSERTED when the
        decision given is the one recorded (returning its row would cost more than the
        rest of the insert)."""
        run_id, step = values["run_id"], values["step"]
        owner, params = _owner(attempt)
        inserted = cur.run(
            f"INSERT INTO decisions ({', '.join(values)}) SELECT {codec.marks(len(values))}"
            f" FROM runs WHERE runs.id = %s{owner}"
            " ON CONFLICT (run_id, step) DO NOTHING",
            (*codec.columns(self.dialect, values), run_id, *params))
        if not inserted:  # recorded before (a replay), or not this attempt's to write
            return cur.one("SELECT r.attempts, d.* FROM runs r LEFT JOIN decisions d"
                           " ON d.run_id = r.id AND d.step = %s WHERE r.id = %s",
                           (step, run_id))
        if checkpoint:  # recorded with its checkpoint: the step is done
            _checkpoint(cur, run_id, step, None)
        return _INSERTED

    def complete_step(self, run_id: int, step: int, *, equity: Decimal, cash: Decimal,
                      attempt: int | None = None) -> None:
        d = self.dialect
        with self._one_statement() as cur:
            if d.chains_writes:
                row = cur.one(*_complete_statement(d, run_id, step, equity, cash, attempt))
            else:
                row = self._complete_step_stepwise(cur, run_id, step, equity, cash, attempt)
        _fenced(run_id, row, attempt)

    def _complete_step_stepwise(self, cur: Cursor, run_id: int, step: int, equity: Decimal,
                                cash: Decimal, attempt: int | None) -> codec.Row | None:
        """SQLite: the checkpoint fenced by its own condition, then the decision."""
        if not _checkpoint(cur, run_id, step, attempt):  # superseded, or no such run
            return cur.one("SELECT attempts FROM runs WHERE id = %s", (run_id,))
        d = self.dialect
        cur.run("UPDATE decisions SET completed = %s, equity = %s, cash = %s"
                " WHERE run_id = %s AND step = %s",
                (True, d.money(equity), d.money(cash), run_id, step))
        return {"attempts": attempt if attempt is not None else -1}

