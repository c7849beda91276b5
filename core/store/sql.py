"""One set of queries for both SQL stores.

Queries are written once with `%s` placeholders; a Dialect supplies what differs (value
encoding, row locking, the admission lock, how a unique violation looks). Both stores
use INSERT ... ON CONFLICT and RETURNING, which PostgreSQL and SQLite >= 3.35 share.
"""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any, Protocol

from core import admission
from core.errors import Conflict, IllegalTransition, NotFound, Superseded
from core.records import (
    Batch,
    Decision,
    FireOutcome,
    Model,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderOrigin,
    OrderRecord,
    OrderState,
    Portfolio,
    PositionRecord,
    Run,
    Schedule,
    ScheduleFire,
    Side,
    Trade,
    TradeStatus,
)
from core.spec import RunSpec
from core.spend import SPEND_WAIT_PREFIX, DailyLimit, Spend, UsageRow, over_daily_limit
from core.status import TERMINAL, RunStatus, can_transition
from core.store import codec
from core.store.base import BatchRun, CachedSeries, LedgerTx, PriceBar, RunFilter, Store

MODEL_FIELDS = ("signature", "llm", "custom_rules", "custom_instructions", "parameters")
# A run's rows besides its portfolio, children first (retention deletes them).
RUN_LEDGER_TABLES = ("positions", "trades", "order_events", "orders", "decisions")
# An order with its trade's id (a filled or refused order has one trade at most).
ORDER_COLUMNS = "o.*, (SELECT t.id FROM trades t WHERE t.order_id = o.id) AS trade_id"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Cursor(Protocol):
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[codec.Row]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> codec.Row | None: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Dialect(Protocol):
    for_update: str
    for_share: str

    def money(self, value: Decimal | None) -> Any: ...
    def json(self, value: Any) -> Any: ...
    def time(self, value: dt.datetime | None) -> Any: ...
    def day(self, value: dt.date) -> Any: ...
    def lock_admission(self, cur: Cursor) -> None: ...
    def sum_money(self, expr: str) -> str: ...
    def date_of(self, expr: str) -> str: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...


class SqlLedgerTx(LedgerTx):
    def __init__(self, cur: Cursor, dialect: Dialect, portfolio: Portfolio,
                 bars_done: int = -1) -> None:
        self._cur = cur
        self._d = dialect
        self.portfolio = portfolio
        self.bars_done = bars_done

    def find_trade(self, step: int, seq: int) -> Trade | None:
        row = self._cur.one(
            "SELECT * FROM trades WHERE run_id = %s AND step = %s AND seq = %s",
            (self.portfolio.run_id, step, seq),
        )
        return None if row is None else codec.trade_from(row)

    def insert_trade(self, *, step: int, seq: int, bar_time: dt.datetime,
                     filled_at: dt.datetime | None, side: Side, symbol: str,
                     quantity: Decimal, price: Decimal, fees: Decimal, status: TradeStatus,
                     reason: str | None, cash_after: Decimal, reasoning: str | None,
                     order_id: int | None = None) -> Trade:
        d = self._d
        row = self._cur.one(
            "INSERT INTO trades (run_id, step, seq, bar_time, filled_at, side, symbol,"
            " quantity, price, fees, status, reason, cash_after, reasoning, created_at,"
            " order_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s) RETURNING *",
            (self.portfolio.run_id, step, seq, d.time(bar_time), d.time(filled_at),
             side.value, symbol, d.money(quantity), d.money(price), d.money(fees),
             status.value, reason, d.money(cash_after), reasoning, d.time(utcnow()),
             order_id),
        )
        assert row is not None
        return codec.trade_from(row)

    def save_portfolio(self, portfolio: Portfolio) -> None:
        self._cur.run(
            "UPDATE portfolios SET cash = %s, holdings = %s WHERE run_id = %s",
            (self._d.money(portfolio.cash), self._d.json(codec.holdings_to(portfolio.holdings)),
             portfolio.run_id),
        )
        self.portfolio = portfolio

    def insert_position(self, position: PositionRecord) -> None:
        d = self._d
        self._cur.run(
            "INSERT INTO positions (run_id, step, seq, bar_time, filled_at, action, symbol,"
            " cash, holdings, reasoning) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (position.run_id, position.step, position.seq, d.time(position.bar_time),
             d.time(position.filled_at), position.action.value, position.symbol,
             d.money(position.cash),
             d.json(codec.holdings_to(position.holdings)), position.reasoning),
        )

    # -- orders ----------------------------------------------------------------------
    def find_order(self, step: int, seq: int) -> OrderRecord | None:
        row = self._cur.one(
            f"SELECT {ORDER_COLUMNS} FROM orders o"
            " WHERE o.run_id = %s AND o.step = %s AND o.seq = %s",
            (self.portfolio.run_id, step, seq))
        return None if row is None else codec.order_from(row)

    def get_order(self, order_id: int) -> OrderRecord | None:
        row = self._cur.one(f"SELECT {ORDER_COLUMNS} FROM orders o"
                            " WHERE o.id = %s AND o.run_id = %s",
                            (order_id, self.portfolio.run_id))
        return None if row is None else codec.order_from(row)

    def open_orders(self) -> list[OrderRecord]:
        rows = self._cur.all("SELECT o.*, NULL AS trade_id FROM orders o"
                             " WHERE o.run_id = %s AND o.state = 'open' ORDER BY o.id",
                             (self.portfolio.run_id,))
        return [codec.order_from(r) for r in rows]

    def step_orders(self, step: int) -> list[OrderRecord]:
        rows = self._cur.all(f"SELECT {ORDER_COLUMNS} FROM orders o"
                             " WHERE o.run_id = %s AND o.step = %s ORDER BY o.seq",
                             (self.portfolio.run_id, step))
        return [codec.order_from(r) for r in rows]

    def insert_order(self, *, step: int, seq: int, bar_time: dt.datetime, active_from: int,
                     order: Order, origin: OrderOrigin, state: OrderState,
                     parent_id: int | None = None, reason: str | None = None,
                     filled_at: dt.datetime | None = None, fill_price: Decimal | None = None,
                     reasoning: str | None = None) -> OrderRecord:
        d, now = self._d, utcnow()
        row = self._cur.one(
            "INSERT INTO orders (run_id, step, seq, bar_time, active_from, side, symbol,"
            " quantity, type, limit_price, stop_price, time_in_force, stop_loss, origin,"
            " parent_id, state, reason, filled_at, fill_price, reasoning, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s) RETURNING *, NULL AS trade_id",
            (self.portfolio.run_id, step, seq, d.time(bar_time), active_from,
             order.side.value, order.symbol, d.money(order.quantity), order.type.value,
             d.money(order.limit_price), d.money(order.stop_price),
             order.time_in_force.value, d.money(order.stop_loss), origin.value, parent_id,
             state.value, reason, d.time(filled_at), d.money(fill_price), reasoning,
             d.time(now), d.time(now)),
        )
        assert row is not None
        return codec.order_from(row)

    def update_order(self, order_id: int, *, state: OrderState | None = None,
                     reason: str | None = None, triggered_at: dt.datetime | None = None,
                     filled_at: dt.datetime | None = None,
                     fill_price: Decimal | None = None) -> OrderRecord | None:
        d = self._d
        changes: dict[str, Any] = {"state": None if state is None else state.value,
                                   "reason": reason, "triggered_at": d.time(triggered_at),
                                   "filled_at": d.time(filled_at),
                                   "fill_price": d.money(fill_price)}
        sets = [f"{column} = %s" for column, value in changes.items() if value is not None]
        values = [value for value in changes.values() if value is not None]
        row = self._cur.one(
            f"UPDATE orders SET {', '.join([*sets, 'updated_at = %s'])}"
            " WHERE id = %s AND run_id = %s AND state = 'open' RETURNING *",
            (*values, d.time(utcnow()), order_id, self.portfolio.run_id))
        # trade_id: the caller knows the trade it wrote (none is read back here).
        return None if row is None else codec.order_from({**row, "trade_id": None})

    def add_order_events(self, events: Sequence[OrderEvent]) -> None:
        if not events:
            return
        d, now = self._d, utcnow()
        self._cur.many(
            "INSERT INTO order_events (run_id, order_id, step, kind, bar_time, price, reason,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(self.portfolio.run_id, e.order_id, e.step, e.kind.value, d.time(e.bar_time),
              d.money(e.price), e.reason, d.time(now)) for e in events])

    def mark_bars_done(self, step: int) -> None:
        self._cur.run("UPDATE portfolios SET bars_done = %s WHERE run_id = %s",
                      (step, self.portfolio.run_id))
        self.bars_done = step


class SqlStore(Store):
    """Store semantics on top of `_tx`, which subclasses supply per database."""

    dialect: Dialect

    @abstractmethod
    def _tx(self, write: bool = False) -> AbstractContextManager[Cursor]:
        """A transaction; `write` ones take the database's write lock where it has one."""

    def ping(self) -> None:
        with self._tx() as cur:
            cur.one("SELECT 1 AS ok")

    # -- models ----------------------------------------------------------------------
    def create_model(self, user_id: str, signature: str, *, llm: str | None = None,
                     custom_rules: str | None = None, custom_instructions: str | None = None,
                     parameters: dict[str, Any] | None = None) -> Model:
        d, now = self.dialect, utcnow()
        with self._tx(write=True) as cur:
            row = cur.one(
                "INSERT INTO models (user_id, signature, llm, custom_rules, custom_instructions,"
                " parameters, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (user_id, signature) DO NOTHING RETURNING *",
                (user_id, signature, llm, custom_rules, custom_instructions,
                 d.json(parameters or {}), d.time(now), d.time(now)),
            )
        if row is None:
            raise Conflict(f"a model with signature {signature!r} already exists")
        return codec.model_from(row)

    def get_model(self, model_id: int, user_id: str | None = None) -> Model:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM models WHERE id = %s", (model_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"model {model_id} not found")
        return codec.model_from(row)

    def list_models(self, user_id: str, *, after_id: int | None = None,
                    limit: int = 50) -> list[Model]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM models WHERE user_id = %s AND id > %s ORDER BY id LIMIT %s",
                (user_id, after_id or 0, limit),
            )
        return [codec.model_from(r) for r in rows]

    def update_model(self, model_id: int, user_id: str, changes: dict[str, Any]) -> Model:
        unknown = set(changes) - set(MODEL_FIELDS)
        if unknown:
            raise ValueError(f"unknown model fields: {sorted(unknown)}")
        self.get_model(model_id, user_id)
        if not changes:
            return self.get_model(model_id, user_id)
        d = self.dialect
        values = [d.json(v) if k == "parameters" else v for k, v in changes.items()]
        assignments = ", ".join(f"{k} = %s" for k in changes)
        try:
            with self._tx(write=True) as cur:
                row = cur.one(
                    f"UPDATE models SET {assignments}, updated_at = %s"
                    " WHERE id = %s AND user_id = %s RETURNING *",
                    (*values, d.time(utcnow()), model_id, user_id),
                )
        except Exception as exc:
            if d.is_unique_violation(exc):
                raise Conflict(f"a model with signature {changes.get('signature')!r} "
                               "already exists") from exc
            raise
        if row is None:
            raise NotFound(f"model {model_id} not found")
        return codec.model_from(row)

    def delete_model(self, model_id: int, user_id: str) -> None:
        with self._tx(write=True) as cur:
            for kind in ("runs", "schedules"):
                if not cur.one(f"SELECT 1 AS x FROM {kind} WHERE model_id = %s LIMIT 1",
                               (model_id,)):
                    continue
                owned = cur.one("SELECT user_id FROM models WHERE id = %s", (model_id,))
                if owned and owned["user_id"] == user_id:
                    raise Conflict(f"model {model_id} has {kind}; delete them first")
            count = cur.run("DELETE FROM models WHERE id = %s AND user_id = %s",
                            (model_id, user_id))
        if count == 0:
            raise NotFound(f"model {model_id} not found")

    # -- runs ------------------------------------------------------------------------
    def create_run(self, user_id: str, model_id: int, spec: RunSpec, steps_total: int, *,
                   idempotency_key: str | None = None,
                   request_hash: str | None = None) -> tuple[Run, bool]:
        with self._tx(write=True) as cur:
            # In the insert's transaction: a POST is one transaction, not two.
            if cur.one("SELECT id FROM models WHERE id = %s AND user_id = %s",
                       (model_id, user_id)) is None:
                raise NotFound(f"model {model_id} not found")
            row = self._insert_run(cur, user_id, model_id, spec, steps_total, utcnow(),
                                   idempotency_key=idempotency_key, request_hash=request_hash)
            if row is not None:
                return codec.run_from(row), True
            existing = cur.one(
                "SELECT * FROM runs WHERE user_id = %s AND idempotency_key = %s",
                (user_id, idempotency_key),
            )
        assert existing is not None
        if existing["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was used with a different request body")
        return codec.run_from(existing), False

    def _insert_run(self, cur: Cursor, user_id: str, model_id: int, spec: RunSpec,
                    steps_total: int, created_at: dt.datetime, *,
                    idempotency_key: str | None = None, request_hash: str | None = None,
                    batch_id: int | None = None,
                    schedule_id: int | None = None) -> codec.Row | None:
        """A queued run and its portfolio of initial cash; None when the user's
        Idempotency-Key is taken already (a NULL key never is)."""
        d = self.dialect
        row = cur.one(
            "INSERT INTO runs (user_id, model_id, spec, mode, symbols, status, steps_total,"
            " created_at, idempotency_key, request_hash, batch_id, schedule_id)"
            " VALUES (%s, %s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *",
            # Unset options are left out: a runner of the previous release (a rolling
            # upgrade) still reads a spec that names none of the newer ones.
            (user_id, model_id, d.json(spec.stored()),
             spec.mode.value, ",".join(spec.symbols), steps_total, d.time(created_at),
             idempotency_key, request_hash, batch_id, schedule_id),
        )
        if row is not None:
            cur.run("INSERT INTO portfolios (run_id, cash, holdings) VALUES (%s, %s, %s)",
                    (row["id"], d.money(spec.initial_cash), d.json({})))
        return row

    def get_run(self, run_id: int, user_id: str | None = None) -> Run:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM runs WHERE id = %s", (run_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"run {run_id} not found")
        return codec.run_from(row)

    def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]:
        where, params = ["1 = 1"], []  # type: list[str], list[Any]
        for column, value in (("user_id", user_id), ("status", flt.status),
                              ("model_id", flt.model_id), ("mode", flt.mode)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(str(value) if column != "model_id" else value)
        if flt.symbol is not None:
            where.append("(',' || symbols || ',') LIKE %s")
            params.append(f"%,{flt.symbol},%")
        if flt.before_id is not None:
            where.append("id < %s")
            params.append(flt.before_id)
        if flt.batch_id is not None:
            where.append("batch_id = %s")
            params.append(flt.batch_id)
        if flt.schedule_id is not None:
            where.append("schedule_id = %s")
            params.append(flt.schedule_id)
        with self._tx() as cur:
            rows = cur.all(
                f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
                (*params, flt.limit),
            )
        return [codec.run_from(r) for r in rows]

    def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        if not statuses:
            return []
        marks = ", ".join("%s" for _ in statuses)
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY id",
                           [s.value for s in statuses])
        return [codec.run_from(r) for r in rows]

    def run_statuses(self, run_ids: Collection[int]) -> dict[int, RunStatus]:
        if not run_ids:
            return {}
        ids = [int(r) for r in run_ids]
        marks = ", ".join("%s" for _ in ids)
        with self._tx() as cur:
            rows = cur.all(f"SELECT id, status FROM runs WHERE id IN ({marks})", ids)
        return {int(r["id"]): RunStatus(r["status"]) for r in rows}

    def count_held_for_spend(self) -> int:
        with self._tx() as cur:
            row = cur.one("SELECT COUNT(*) AS n FROM runs WHERE status = 'queued'"
                          " AND status_reason LIKE %s", (SPEND_WAIT_PREFIX + "%",))
        return int(row["n"]) if row else 0

    def count_runs_by_status(self) -> dict[RunStatus, int]:
        with self._tx() as cur:
            rows = cur.all("SELECT status, COUNT(*) AS n FROM runs GROUP BY status", [])
        return {RunStatus(r["status"]): int(r["n"]) for r in rows}

    def transition(self, run_id: int, target: RunStatus, *, reason: str | None = None,
                   result: dict[str, Any] | None = None, attempt: int | None = None) -> Run:
        d = self.dialect
        with self._tx(write=True) as cur:
            row = cur.one(f"SELECT * FROM runs WHERE id = %s{d.for_update}", (run_id,))
            if row is None:
                raise NotFound(f"run {run_id} not found")
            _require_attempt(run_id, row, attempt)
            current = RunStatus(row["status"])
            if not can_transition(current, target):
                raise IllegalTransition(run_id, current.value, target.value)
            now = d.time(utcnow())
            sets = ["status = %s", "status_reason = COALESCE(%s, status_reason)"]
            params: list[Any] = [target.value, reason]
            if result is not None:
                sets.append("result = %s")
                params.append(d.json(result))
            if target is RunStatus.ADMITTED:
                sets.append("admitted_at = %s")
                params.append(now)
            if target is RunStatus.STOPPING:
                sets.append("stop_requested_at = COALESCE(stop_requested_at, %s)")
                params.append(now)
            if target.is_terminal:
                sets.append("finished_at = %s")
                params.append(now)
                self._end_open_orders(cur, run_id, int(row["steps_done"]),
                                      f"the run ended ({target.value})")
            updated = cur.one(
                f"UPDATE runs SET {', '.join(sets)} WHERE id = %s RETURNING *",
                (*params, run_id),
            )
        assert updated is not None
        return codec.run_from(updated)

    def start_attempt(self, run_id: int, *, decider: str | None = None,
                      decider_reason: str | None = None) -> Run:
        d = self.dialect
        with self._tx(write=True) as cur:
            row = cur.one(f"SELECT status FROM runs WHERE id = %s{d.for_update}", (run_id,))
            if row is None:
                raise NotFound(f"run {run_id} not found")
            current = RunStatus(row["status"])
            if current is not RunStatus.STOPPING and not can_transition(
                current, RunStatus.RUNNING
            ):
                raise IllegalTransition(run_id, current.value, RunStatus.RUNNING.value)
            # A runner started on a run that is being stopped keeps `stopping`: it will
            # save at once and end as stopped.
            target = current if current is RunStatus.STOPPING else RunStatus.RUNNING
            updated = cur.one(
                "UPDATE runs SET status = %s, attempts = attempts + 1,"
                " started_at = COALESCE(started_at, %s),"
                " admitted_at = COALESCE(admitted_at, %s), decider = COALESCE(%s, decider)"
                + (", decider_reason = %s" if decider is not None else "")
                + " WHERE id = %s RETURNING *",
                (target.value, d.time(utcnow()), d.time(utcnow()), decider,
                 *((decider_reason,) if decider is not None else ()), run_id),
            )
        assert updated is not None
        return codec.run_from(updated)

    def note_status(self, run_id: int, status: RunStatus, reason: str | None) -> None:
        with self._tx(write=True) as cur:
            cur.run("UPDATE runs SET status_reason = %s WHERE id = %s AND status = %s",
                    (reason, run_id, status.value))

    def admit_queued(self, per_user_limit: int, global_limit: int, *,
                     skip: Collection[int] = (), spend: DailyLimit | None = None
                     ) -> list[Run]:
        d = self.dialect
        with self._tx(write=True) as cur:
            d.lock_admission(cur)
            active = cur.all(
                "SELECT user_id, COUNT(*) AS n FROM runs WHERE status IN (%s, %s, %s)"
                " GROUP BY user_id",
                [s.value for s in (RunStatus.ADMITTED, RunStatus.RUNNING, RunStatus.STOPPING)],
            )
            per_user = {r["user_id"]: int(r["n"]) for r in active}
            queued = cur.all(
                "SELECT r.id, r.user_id, r.spec, m.llm FROM runs r"
                " JOIN models m ON m.id = r.model_id"
                " WHERE r.status = 'queued' ORDER BY r.created_at, r.id"
            )
            held = self._hold_for_spend(
                cur, {int(r["id"]): r["user_id"] for r in queued if _may_spend(r)}, spend)
            chosen = admission.choose(
                [admission.Queued(int(r["id"]), r["user_id"]) for r in queued], per_user,
                per_user_limit=per_user_limit, global_limit=global_limit,
                excluded={*skip, *held})
            admitted = []
            for run_id in chosen:
                updated = cur.one(
                    "UPDATE runs SET status = 'admitted', admitted_at = %s, status_reason = NULL"
                    " WHERE id = %s AND status = 'queued' RETURNING *",
                    (d.time(utcnow()), run_id),
                )
                if updated is not None:
                    admitted.append(codec.run_from(updated))
        return admitted

    def _hold_for_spend(self, cur: Cursor, spending: dict[int, str],
                        spend: DailyLimit | None) -> set[int]:
        """The queued runs that may call an LLM (`spending`: run id -> user) and whose
        user's spend of the day reached their limit: they wait and say why; a spend
        reason that no longer holds goes. Returns the ids of the runs held."""
        held: set[int] = set()
        if spend is not None and spending:
            users = set(spending.values())
            own = self._daily_limits(cur, users)
            limits = {u: own.get(u, spend.default_usd) for u in users}
            limited = {u for u, limit in limits.items() if limit is not None}
            spent = self._spend_by_user(cur, limited, *spend.window) if limited else {}
            for user in sorted(limited):
                limit, used = limits[user], spent.get(user, Decimal(0))
                if limit is None or used < limit:
                    continue
                runs = sorted(i for i, u in spending.items() if u == user)
                held.update(runs)
                reason = over_daily_limit(used, limit, spend.day)
                cur.run("UPDATE runs SET status_reason = %s WHERE status = 'queued'"
                        f" AND id IN ({', '.join(['%s'] * len(runs))})"
                        " AND (status_reason IS NULL OR status_reason <> %s)",
                        (reason, *runs, reason))
        # One statement for every other run: a spend reason that no longer holds goes.
        marks = ", ".join(["%s"] * len(held))
        cur.run("UPDATE runs SET status_reason = NULL WHERE status = 'queued'"
                " AND status_reason LIKE %s" + (f" AND id NOT IN ({marks})" if held else ""),
                (SPEND_WAIT_PREFIX + "%", *sorted(held)))
        return held

    def delete_run(self, run_id: int, user_id: str | None = None) -> None:
        self.get_run(run_id, user_id)
        with self._tx(write=True) as cur:
            for table in (*RUN_LEDGER_TABLES, "portfolios"):
                cur.run(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))
            cur.run("DELETE FROM runs WHERE id = %s", (run_id,))

    # -- batches ---------------------------------------------------------------------
    def create_batch(self, user_id: str, name: str | None, template: dict[str, Any],
                     runs: Sequence[BatchRun], *, idempotency_key: str | None = None,
                     request_hash: str | None = None) -> tuple[Batch, list[Run], bool]:
        d, now = self.dialect, utcnow()
        with self._tx(write=True) as cur:
            row = cur.one(
                "INSERT INTO batches (user_id, name, template, created_at, idempotency_key,"
                " request_hash) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *",
                (user_id, name, d.json(template), d.time(now), idempotency_key, request_hash))
            if row is None:
                existing = cur.one(
                    "SELECT * FROM batches WHERE user_id = %s AND idempotency_key = %s",
                    (user_id, idempotency_key))
                assert existing is not None
                if existing["request_hash"] != request_hash:
                    raise Conflict("this Idempotency-Key was used with a different request body")
                rows = cur.all("SELECT * FROM runs WHERE batch_id = %s ORDER BY id",
                               (existing["id"],))
                return codec.batch_from(existing), [codec.run_from(r) for r in rows], False
            models = {int(m["id"]) for m in cur.all(
                "SELECT id FROM models WHERE user_id = %s", (user_id,))}
            made = []
            for cell in runs:
                if cell.model_id not in models:
                    raise NotFound(f"model {cell.model_id} not found")
                run = self._insert_run(cur, user_id, cell.model_id, cell.spec,
                                       cell.steps_total, now, batch_id=int(row["id"]))
                assert run is not None
                made.append(codec.run_from(run))
        return codec.batch_from(row), made, True

    def get_batch(self, batch_id: int, user_id: str | None = None) -> Batch:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM batches WHERE id = %s", (batch_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"batch {batch_id} not found")
        return codec.batch_from(row)

    def list_batches(self, user_id: str, *, before_id: int | None = None,
                     limit: int = 50) -> list[Batch]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM batches WHERE user_id = %s AND id < %s ORDER BY id DESC"
                " LIMIT %s", (user_id, before_id or 2**63 - 1, limit))
        return [codec.batch_from(r) for r in rows]

    # -- schedules -------------------------------------------------------------------
    def create_schedule(self, user_id: str, model_id: int, name: str | None, cron: str,
                        template: dict[str, Any], make_up_seconds: int) -> Schedule:
        self.get_model(model_id, user_id)
        d, now = self.dialect, utcnow()
        with self._tx(write=True) as cur:
            row = cur.one(
                "INSERT INTO schedules (user_id, model_id, name, cron, template,"
                " make_up_seconds, paused, created_at, fired_through)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (user_id, model_id, name, cron, d.json(template), make_up_seconds,
                 False, d.time(now), d.time(now)))
        assert row is not None
        return codec.schedule_from(row)

    def get_schedule(self, schedule_id: int, user_id: str | None = None) -> Schedule:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM schedules WHERE id = %s", (schedule_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"schedule {schedule_id} not found")
        return codec.schedule_from(row)

    def list_schedules(self, user_id: str | None, *, before_id: int | None = None,
                       limit: int = 50, active_only: bool = False) -> list[Schedule]:
        where, params = ["id < %s"], [before_id or 2**63 - 1]  # type: list[str], list[Any]
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        if active_only:
            where.append("NOT paused")
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM schedules WHERE {' AND '.join(where)}"
                           " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [codec.schedule_from(r) for r in rows]

    def pause_schedule(self, schedule_id: int, user_id: str, paused: bool) -> Schedule:
        d = self.dialect
        with self._tx(write=True) as cur:
            row = cur.one(f"SELECT * FROM schedules WHERE id = %s{d.for_update}",
                          (schedule_id,))
            if row is None or row["user_id"] != user_id:
                raise NotFound(f"schedule {schedule_id} not found")
            if bool(row["paused"]) == paused:
                return codec.schedule_from(row)
            # Resumed: what fell due while paused is passed over, not made up.
            through = row["fired_through"] if paused else d.time(utcnow())
            updated = cur.one("UPDATE schedules SET paused = %s, fired_through = %s"
                              " WHERE id = %s RETURNING *",
                              (paused, through, schedule_id))
        assert updated is not None
        return codec.schedule_from(updated)

    def delete_schedule(self, schedule_id: int, user_id: str) -> None:
        with self._tx(write=True) as cur:
            cur.run("UPDATE runs SET schedule_id = NULL WHERE schedule_id = %s AND"
                    " user_id = %s", (schedule_id, user_id))
            cur.run("DELETE FROM schedule_fires WHERE schedule_id IN"
                    " (SELECT id FROM schedules WHERE id = %s AND user_id = %s)",
                    (schedule_id, user_id))
            count = cur.run("DELETE FROM schedules WHERE id = %s AND user_id = %s",
                            (schedule_id, user_id))
        if count == 0:
            raise NotFound(f"schedule {schedule_id} not found")

    def fire_schedule(self, schedule_id: int, due_at: dt.datetime, outcome: FireOutcome, *,
                      run: BatchRun | None = None, reason: str | None = None
                      ) -> tuple[ScheduleFire, Run | None] | None:
        d, now = self.dialect, utcnow()
        with self._tx(write=True) as cur:
            # The row lock orders two replicas firing the same schedule; the fire's
            # primary key is what refuses the second.
            row = cur.one(f"SELECT * FROM schedules WHERE id = %s{d.for_update}",
                          (schedule_id,))
            if row is None or bool(row["paused"]):
                return None
            fire = cur.one(
                "INSERT INTO schedule_fires (schedule_id, due_at, outcome, reason,"
                " recorded_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (schedule_id, due_at) DO NOTHING RETURNING *",
                (schedule_id, d.time(due_at), outcome.value, reason, d.time(now)))
            if fire is None:
                return None
            made = None
            if run is not None:
                made = self._insert_run(cur, row["user_id"], run.model_id, run.spec,
                                        run.steps_total, now, schedule_id=schedule_id)
                assert made is not None
                fire = cur.one("UPDATE schedule_fires SET run_id = %s WHERE schedule_id = %s"
                               " AND due_at = %s RETURNING *",
                               (made["id"], schedule_id, d.time(due_at)))
                assert fire is not None
            if codec.ts(row["fired_through"]) < due_at:
                cur.run("UPDATE schedules SET fired_through = %s WHERE id = %s",
                        (d.time(due_at), schedule_id))
        return codec.fire_from(fire), None if made is None else codec.run_from(made)

    def list_fires(self, schedule_id: int, *, limit: int = 20) -> list[ScheduleFire]:
        with self._tx() as cur:
            rows = cur.all("SELECT * FROM schedule_fires WHERE schedule_id = %s"
                           " ORDER BY due_at DESC LIMIT %s", (schedule_id, limit))
        return [codec.fire_from(r) for r in rows]

    def _end_open_orders(self, cur: Cursor, run_id: int, step: int, reason: str) -> None:
        """A final run has no open order: what a runner did not end itself (a run stopped
        or failed mid-way, or finalized from its ledger) is cancelled with the status
        change, each with its event."""
        d = self.dialect
        rows = cur.all("UPDATE orders SET state = 'cancelled', reason = %s, updated_at = %s"
                       " WHERE run_id = %s AND state = 'open' RETURNING id",
                       (reason, d.time(utcnow()), run_id))
        if rows:
            cur.many("INSERT INTO order_events (run_id, order_id, step, kind, bar_time, price,"
                     " reason, created_at) VALUES (%s, %s, %s, %s, NULL, NULL, %s, %s)",
                     [(run_id, r["id"], step, OrderEventKind.CANCELLED.value, reason,
                       d.time(utcnow())) for r in sorted(rows, key=lambda r: int(r["id"]))])

    # -- ledger ----------------------------------------------------------------------
    def _fence(self, cur: Cursor, run_id: int, attempt: int | None) -> None:
        """Refuse a superseded runner's write. The row stays share-locked until the write
        commits, so a newer runner's start_attempt waits for it instead of racing it."""
        if attempt is None:
            return
        row = cur.one(f"SELECT attempts FROM runs WHERE id = %s{self.dialect.for_share}",
                      (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} not found")
        _require_attempt(run_id, row, attempt)

    @contextmanager
    def ledger_tx(self, run_id: int, *, attempt: int | None = None) -> Iterator[LedgerTx]:
        with self._tx(write=True) as cur:
            self._fence(cur, run_id, attempt)
            row = cur.one(
                f"SELECT * FROM portfolios WHERE run_id = %s{self.dialect.for_update}",
                (run_id,),
            )
            if row is None:
                raise NotFound(f"run {run_id} has no portfolio")
            yield SqlLedgerTx(cur, self.dialect, codec.portfolio_from(row),
                              int(row.get("bars_done", -1)))

    def get_portfolio(self, run_id: int) -> Portfolio:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM portfolios WHERE run_id = %s", (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} has no portfolio")
        return codec.portfolio_from(row)

    def list_trades(self, run_id: int, *, after_id: int = 0, limit: int = 1000,
                    status: TradeStatus | None = None) -> list[Trade]:
        # Ordered by the keyset itself (id), so that a page after `after_id` never skips
        # or repeats a trade. One run's trades are inserted under its portfolio lock, so
        # id order is the order the ledger applied them: a session's (step, seq) order.
        where, params = "run_id = %s AND id > %s", [run_id, after_id]  # type: str, list[Any]
        if status is not None:
            where += " AND status = %s"
            params.append(status.value)
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM trades WHERE {where} ORDER BY id LIMIT %s",
                           (*params, limit))
        return [codec.trade_from(r) for r in rows]

    def recent_trades(self, run_id: int, limit: int) -> list[Trade]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM trades WHERE run_id = %s ORDER BY id DESC LIMIT %s",
                (run_id, limit),
            )
        return [codec.trade_from(r) for r in rows]

    def step_trades(self, run_id: int, step: int) -> list[Trade]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM trades WHERE run_id = %s AND step = %s ORDER BY seq",
                (run_id, step),
            )
        return [codec.trade_from(r) for r in rows]

    def list_positions(self, run_id: int, *, limit: int = 1000) -> list[PositionRecord]:
        with self._tx() as cur:
            rows = cur.all(
                # id: the order the ledger applied them in (a resting order's fill
                # keeps the step it was decided on, which may be long before).
                "SELECT * FROM positions WHERE run_id = %s ORDER BY id LIMIT %s",
                (run_id, limit),
            )
        return [codec.position_from(r) for r in rows]

    # -- orders ----------------------------------------------------------------------
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
            where += f" AND o.id IN ({', '.join(['%s'] * len(wanted))})"
            params.extend(wanted)
        with self._tx() as cur:
            rows = cur.all(f"SELECT {ORDER_COLUMNS} FROM orders o WHERE {where}"
                           " ORDER BY o.id LIMIT %s", (*params, limit))
        return [codec.order_from(r) for r in rows]

    def step_orders(self, run_id: int, step: int) -> list[OrderRecord]:
        with self._tx() as cur:
            rows = cur.all(f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.run_id = %s"
                           " AND o.step = %s AND o.origin = %s ORDER BY o.seq",
                           (run_id, step, OrderOrigin.DECIDER.value))
        return [codec.order_from(r) for r in rows]

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
        return [codec.order_event_from(r) for r in rows]

    def count_orders(self, run_id: int) -> dict[OrderState, int]:
        with self._tx() as cur:
            rows = cur.all("SELECT state, COUNT(*) AS n FROM orders WHERE run_id = %s"
                           " GROUP BY state", (run_id,))
        return {OrderState(r["state"]): int(r["n"]) for r in rows}

    def list_decisions(self, run_id: int, *, after_step: int = -1,
                       limit: int = 1000) -> list[Decision]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM decisions WHERE run_id = %s AND step > %s ORDER BY step LIMIT %s",
                (run_id, after_step, limit),
            )
        return [codec.decision_from(r) for r in rows]

    def get_decision(self, run_id: int, step: int) -> Decision | None:
        with self._tx() as cur:
            row = cur.one("SELECT * FROM decisions WHERE run_id = %s AND step = %s",
                          (run_id, step))
        return None if row is None else codec.decision_from(row)

    def record_decision(self, decision: Decision, *, attempt: int | None = None) -> Decision:
        d, x = self.dialect, decision
        with self._tx(write=True) as cur:
            self._fence(cur, x.run_id, attempt)
            row = cur.one(
                "INSERT INTO decisions (run_id, step, bar_time, action, orders, reasoning,"
                " outcome, latency_ms, tokens_in, tokens_out, cost, tool_calls, error, equity,"
                " cash, completed, tokens_cached, decided_at, cancels, close_all) VALUES (%s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (run_id, step) DO NOTHING RETURNING *",
                (x.run_id, x.step, d.time(x.bar_time), x.action,
                 d.json([o.to_json() for o in x.orders]), x.reasoning, x.outcome, x.latency_ms,
                 x.tokens_in, x.tokens_out, d.money(x.cost), d.json(x.tool_calls), x.error,
                 d.money(x.equity), d.money(x.cash), x.completed, x.tokens_cached,
                 d.time(x.decided_at or utcnow()), d.json(list(x.cancels)), x.close_all),
            )
            if row is None:
                row = cur.one("SELECT * FROM decisions WHERE run_id = %s AND step = %s",
                              (x.run_id, x.step))
            elif x.completed:  # recorded with its checkpoint: the step is done
                cur.run("UPDATE runs SET steps_done = %s WHERE id = %s AND steps_done <= %s",
                        (x.step + 1, x.run_id, x.step))
        assert row is not None
        return codec.decision_from(row)

    def complete_step(self, run_id: int, step: int, *, equity: Decimal, cash: Decimal,
                      attempt: int | None = None) -> None:
        d = self.dialect
        with self._tx(write=True) as cur:
            self._fence(cur, run_id, attempt)
            cur.run(
                "UPDATE decisions SET completed = %s, equity = %s, cash = %s"
                " WHERE run_id = %s AND step = %s",
                (True, d.money(equity), d.money(cash), run_id, step),
            )
            cur.run(
                "UPDATE runs SET steps_done = %s WHERE id = %s AND steps_done <= %s",
                (step + 1, run_id, step),
            )

    # -- retention -------------------------------------------------------------------
    def prunable_runs(self, finished_before: dt.datetime, *,
                      after: tuple[dt.datetime, int] | None = None,
                      limit: int = 100) -> list[Run]:
        d = self.dialect
        final = [s.value for s in TERMINAL]
        where = (f"status IN ({', '.join(['%s'] * len(final))})"
                 " AND finished_at IS NOT NULL AND finished_at < %s")
        params: list[Any] = [*final, d.time(finished_before)]
        if after is not None:
            where += " AND (finished_at > %s OR (finished_at = %s AND id > %s))"
            params += [d.time(after[0]), d.time(after[0]), after[1]]
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM runs WHERE {where} ORDER BY finished_at, id"
                           " LIMIT %s", (*params, limit))
        return [codec.run_from(r) for r in rows]

    def delete_finished_run(self, run_id: int, *, finished_before: dt.datetime,
                            expect_rows: Mapping[str, int] | None = None) -> bool:
        d = self.dialect
        unknown = set(expect_rows or {}) - set(RUN_LEDGER_TABLES)
        if unknown:
            raise ValueError(f"not a table of a run's ledger: {sorted(unknown)}")
        with self._tx(write=True) as cur:
            row = cur.one(f"SELECT status, finished_at FROM runs WHERE id = %s{d.for_update}",
                          (run_id,))
            if (row is None or RunStatus(row["status"]) not in TERMINAL
                    or row["finished_at"] is None
                    or codec.ts(row["finished_at"]) >= finished_before):
                return False
            # The portfolio lock keeps out a trade (ledger_tx) until this commits.
            cur.one(f"SELECT run_id FROM portfolios WHERE run_id = %s{d.for_update}", (run_id,))
            for table, expected in (expect_rows or {}).items():
                n = cur.one(f"SELECT COUNT(*) AS n FROM {table} WHERE run_id = %s", (run_id,))
                if n is None or int(n["n"]) != expected:
                    return False
            for table in (*RUN_LEDGER_TABLES, "portfolios"):
                cur.run(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))
            cur.run("DELETE FROM runs WHERE id = %s", (run_id,))
        return True

    # -- market data -----------------------------------------------------------------
    _INSERT_BAR = ("INSERT INTO stock_prices (source, symbol, interval, bar_time, open, high,"
                   " low, close, volume) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")

    def _bar_row(self, b: PriceBar, source: str | None = None) -> tuple[Any, ...]:
        d = self.dialect
        return (source or b.source, b.symbol, b.interval, d.time(b.bar_time), d.money(b.open),
                d.money(b.high), d.money(b.low), d.money(b.close), d.money(b.volume))

    def save_prices(self, bars: Sequence[PriceBar]) -> int:
        with self._tx(write=True) as cur:
            cur.many(self._INSERT_BAR + " ON CONFLICT (source, symbol, interval, bar_time)"
                     " DO UPDATE SET open = excluded.open, high = excluded.high,"
                     " low = excluded.low, close = excluded.close, volume = excluded.volume",
                     [self._bar_row(b) for b in bars])
        return len(bars)

    def load_prices(self, symbol: str, interval: str, start: dt.datetime,
                    end: dt.datetime, *, source: str = "table") -> Iterator[PriceBar]:
        d = self.dialect
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM stock_prices WHERE source = %s AND symbol = %s"
                " AND interval = %s AND bar_time >= %s AND bar_time <= %s ORDER BY bar_time",
                (source, symbol, interval, d.time(start), d.time(end)),
            )
        for r in rows:
            yield PriceBar(symbol=r["symbol"], interval=r["interval"],
                           bar_time=codec.ts(r["bar_time"]), open=codec.dec(r["open"]),
                           high=codec.dec(r["high"]), low=codec.dec(r["low"]),
                           close=codec.dec(r["close"]), volume=codec.dec(r["volume"]),
                           source=r["source"])

    def cache_days(self, source: str, symbol: str, interval: str,
                   days: Mapping[dt.date, Sequence[PriceBar]]) -> int:
        d, cached = self.dialect, 0
        with self._tx(write=True) as cur:
            for day, bars in sorted(days.items()):
                # The day row first: a concurrent fetch of the same day waits on its key
                # and then finds it taken, so no bar is written twice.
                if not cur.run(
                    "INSERT INTO price_days (source, symbol, interval, day, bars, fetched_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (source, symbol, interval, d.day(day), len(bars), d.time(utcnow())),
                ):
                    continue
                cur.many(self._INSERT_BAR + " ON CONFLICT DO NOTHING",
                         [self._bar_row(b, source) for b in bars])
                cached += 1
        return cached

    def cached_days(self, source: str, symbol: str, interval: str, first: dt.date,
                    last: dt.date) -> set[dt.date]:
        d = self.dialect
        with self._tx() as cur:
            rows = cur.all(
                "SELECT day FROM price_days WHERE source = %s AND symbol = %s"
                " AND interval = %s AND day >= %s AND day <= %s",
                (source, symbol, interval, d.day(first), d.day(last)),
            )
        return {codec.day(r["day"]) for r in rows}

    def cache_summary(self, *, source: str | None = None,
                      symbol: str | None = None) -> list[CachedSeries]:
        wanted = {"source": source, "symbol": symbol}
        where = " AND ".join(f"{k} = %s" for k, v in wanted.items() if v) or "TRUE"
        with self._tx() as cur:
            rows = cur.all(
                "SELECT source, symbol, interval, MIN(day) AS first_day, MAX(day) AS last_day,"
                " COUNT(*) AS days, SUM(bars) AS bars, MAX(fetched_at) AS fetched_at"
                f" FROM price_days WHERE {where}"
                " GROUP BY source, symbol, interval ORDER BY symbol, interval, source",
                [v for v in wanted.values() if v],
            )
        return [CachedSeries(source=r["source"], symbol=r["symbol"], interval=r["interval"],
                             first_day=codec.day(r["first_day"]),
                             last_day=codec.day(r["last_day"]), days=int(r["days"]),
                             bars=int(r["bars"]), fetched_at=codec.ts(r["fetched_at"]))
                for r in rows]

    # -- LLM spend -------------------------------------------------------------------
    def run_spend(self, run_id: int) -> Spend:
        with self._tx() as cur:
            row = cur.one(f"SELECT {self._spend_columns()} FROM decisions d WHERE d.run_id = %s",
                          (run_id,))
        assert row is not None
        return _spend_from(row)

    def spend_by_user(self, user_ids: Collection[str], since: dt.datetime,
                      until: dt.datetime) -> dict[str, Decimal]:
        if not user_ids:
            return {}
        with self._tx() as cur:
            return self._spend_by_user(cur, user_ids, since, until)

    def _spend_by_user(self, cur: Cursor, user_ids: Collection[str], since: dt.datetime,
                       until: dt.datetime) -> dict[str, Decimal]:
        d = self.dialect
        users = sorted(user_ids)
        rows = cur.all(
            f"SELECT r.user_id, {d.sum_money('d.cost')} AS cost FROM decisions d"
            " JOIN runs r ON r.id = d.run_id"
            f" WHERE r.user_id IN ({', '.join(['%s'] * len(users))})"
            " AND d.decided_at >= %s AND d.decided_at < %s GROUP BY r.user_id",
            (*users, d.time(since), d.time(until)))
        return {r["user_id"]: codec.opt_dec(r["cost"]) or Decimal(0) for r in rows}

    def usage(self, user_id: str, since: dt.datetime, until: dt.datetime) -> list[UsageRow]:
        d = self.dialect
        with self._tx() as cur:
            rows = cur.all(
                f"SELECT {d.date_of('d.decided_at')} AS day, m.id AS model_id, m.signature,"
                f" m.llm, {self._spend_columns()} FROM decisions d"
                " JOIN runs r ON r.id = d.run_id JOIN models m ON m.id = r.model_id"
                " WHERE r.user_id = %s AND d.decided_at >= %s AND d.decided_at < %s"
                " AND (d.tokens_in + d.tokens_out > 0 OR d.cost IS NOT NULL)"  # LLM calls
                " GROUP BY 1, m.id, m.signature, m.llm ORDER BY 1 DESC, m.id",
                (user_id, d.time(since), d.time(until)))
        return [UsageRow(day=codec.day(r["day"]), model_id=int(r["model_id"]),
                         signature=r["signature"], llm=r["llm"], spend=_spend_from(r))
                for r in rows]

    def daily_limits(self, user_ids: Collection[str]) -> dict[str, Decimal | None]:
        if not user_ids:
            return {}
        with self._tx() as cur:
            return self._daily_limits(cur, user_ids)

    def _daily_limits(self, cur: Cursor, user_ids: Collection[str]
                      ) -> dict[str, Decimal | None]:
        users = sorted(user_ids)
        rows = cur.all("SELECT user_id, daily_cost_usd FROM user_limits"
                       f" WHERE user_id IN ({', '.join(['%s'] * len(users))})", users)
        return {r["user_id"]: codec.opt_dec(r["daily_cost_usd"]) for r in rows}

    def set_daily_limit(self, user_id: str, daily_cost_usd: Decimal | None, *,
                        by: str) -> None:
        d = self.dialect
        with self._tx(write=True) as cur:
            cur.run("INSERT INTO user_limits (user_id, daily_cost_usd, updated_at, updated_by)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET"
                    " daily_cost_usd = excluded.daily_cost_usd,"
                    " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (user_id, d.money(daily_cost_usd), d.time(utcnow()), by))

    def clear_daily_limit(self, user_id: str) -> bool:
        with self._tx(write=True) as cur:
            return cur.run("DELETE FROM user_limits WHERE user_id = %s", (user_id,)) > 0

    def _spend_columns(self) -> str:
        money = self.dialect.sum_money("d.cost")
        return ("COUNT(*) AS decisions, COALESCE(SUM(d.tokens_in), 0) AS tokens_in,"
                " COALESCE(SUM(d.tokens_out), 0) AS tokens_out,"
                " COALESCE(SUM(d.tokens_cached), 0) AS tokens_cached,"
                f" {money} AS cost, SUM(CASE WHEN d.cost IS NULL AND d.tokens_in + d.tokens_out"
                " > 0 THEN 1 ELSE 0 END) AS unknown_cost")


def _spend_from(row: codec.Row) -> Spend:
    return Spend(decisions=int(row["decisions"]), tokens_in=int(row["tokens_in"]),
                 tokens_out=int(row["tokens_out"]), tokens_cached=int(row["tokens_cached"]),
                 cost_usd=codec.opt_dec(row["cost"]) or Decimal(0),
                 unknown_cost=int(row["unknown_cost"] or 0))


def _may_spend(row: codec.Row) -> bool:
    """A queued run that may call an LLM: its spec asks for one, or leaves the decider
    to its model, which names one."""
    decider = (codec.js(row["spec"]) or {}).get("decider")
    return decider == "llm" or (decider is None and bool(row["llm"]))


def _require_attempt(run_id: int, row: codec.Row, attempt: int | None) -> None:
    """The fencing rule itself: a runner's attempt must still be the run's newest."""
    if attempt is not None and int(row["attempts"]) != attempt:
        raise Superseded(run_id, attempt)
