"""Runs: the one intake that inserts a queued run with its portfolio, and run reads.

A run's status and reason are not written here: core.store.run_status does that, for
core.lifecycle only. Batches and schedules insert their runs through `insert_run`, in
their own transactions.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import Conflict
from core.records import Run
from core.spec import RunSpec
from core.spend import SPEND_WAIT_PREFIX
from core.status import RunStatus
from core.store import codec
from core.store.ledger import RUN_LEDGER_TABLES
from core.store.models import require_model
from core.store.sqlbase import Cursor, Dialect, SqlAccess, insert, insert_row, utcnow


@dataclass(frozen=True, slots=True)
class RunFilter:
    status: RunStatus | None = None
    symbol: str | None = None
    model_id: int | None = None
    mode: str | None = None
    before_id: int | None = None
    limit: int = 50
    batch_id: int | None = None
    schedule_id: int | None = None


class RunStore(ABC):
    @abstractmethod
    def create_run(
        self,
        user_id: str,
        model_id: int,
        spec: RunSpec,
        steps_total: int,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> tuple[Run, bool]:
        """Insert a queued run and its portfolio; (run, created).

        The same idempotency key with the same request hash returns the first run;
        with another hash it is a Conflict.
        """

    @abstractmethod
    def get_run(self, run_id: int, user_id: str | None = None) -> Run: ...

    @abstractmethod
    def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]: ...

    @abstractmethod
    def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]: ...

    @abstractmethod
    def run_statuses(self, run_ids: Collection[int]) -> dict[int, RunStatus]:
        """The status of each run that exists, in one query (absent ids: no such run)."""

    @abstractmethod
    def count_runs_by_status(self) -> dict[RunStatus, int]:
        """Every user's runs, counted by status (metrics)."""

    @abstractmethod
    def count_held_for_spend(self) -> int:
        """Queued runs waiting because their user reached the daily spend limit."""

    @abstractmethod
    def delete_run(self, run_id: int, user_id: str | None = None) -> None: ...


def insert_run(cur: Cursor, d: Dialect, user_id: str, model_id: int, spec: RunSpec,
               steps_total: int, created_at: dt.datetime, *,
               idempotency_key: str | None = None, request_hash: str | None = None,
               batch_id: int | None = None, schedule_id: int | None = None) -> codec.Row | None:
    """A queued run and its portfolio of initial cash; None when the user's
    Idempotency-Key is taken already (a NULL key never is)."""
    # Unset options are left out: a runner of the previous release (a rolling upgrade)
    # still reads a spec that names none of the newer ones.
    values = {"user_id": user_id, "model_id": model_id, "spec": spec.stored(),
              "mode": spec.mode, "symbols": ",".join(spec.symbols),
              "status": RunStatus.QUEUED, "steps_total": steps_total,
              "created_at": created_at, "idempotency_key": idempotency_key,
              "request_hash": request_hash, "batch_id": batch_id, "schedule_id": schedule_id}
    row = insert_row(cur, d, "runs", values,
                 "ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *")
    if row is not None:
        insert(cur, d, "portfolios",
               {"run_id": row["id"], "cash": spec.initial_cash, "holdings": {}})
    return row


def run_list_query(d: Dialect, user_id: str | None, flt: RunFilter) -> tuple[str, list[Any]]:
    """A page of runs, newest first: the one query of the store and of its async reads."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (("user_id", user_id), ("status", flt.status),
                          ("model_id", flt.model_id), ("mode", flt.mode),
                          ("batch_id", flt.batch_id), ("schedule_id", flt.schedule_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(codec.column(d, value))
    if flt.symbol is not None:
        where.append("(',' || symbols || ',') LIKE %s")
        params.append(f"%,{flt.symbol},%")
    if flt.before_id is not None:
        where.append("id < %s")
        params.append(flt.before_id)
    sql = f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s"
    return sql, [*params, flt.limit]


class RunsSql(SqlAccess, RunStore):
    def create_run(self, user_id: str, model_id: int, spec: RunSpec, steps_total: int, *,
                   idempotency_key: str | None = None,
                   request_hash: str | None = None) -> tuple[Run, bool]:
        # A batch (PostgreSQL's pipeline mode): the BEGIN goes out with the model's
        # check and the portfolio's insert with the COMMIT: three round trips, not five.
        with self._tx(write=True, batch=True) as cur:
            # In the insert's transaction: a POST is one transaction, not two.
            require_model(cur, model_id, user_id)
            row = insert_run(cur, self.dialect, user_id, model_id, spec, steps_total,
                             utcnow(), idempotency_key=idempotency_key,
                             request_hash=request_hash)
            if row is not None:
                return codec.record_from(Run, row), True
            existing = cur.one(
                "SELECT * FROM runs WHERE user_id = %s AND idempotency_key = %s",
                (user_id, idempotency_key),
            )
        assert existing is not None
        if existing["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was used with a different request body")
        return codec.record_from(Run, existing), False

    def get_run(self, run_id: int, user_id: str | None = None) -> Run:
        return codec.record_from(Run, self._owned_row("runs", "run", run_id, user_id))

    def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]:
        sql, params = run_list_query(self.dialect, user_id, flt)
        with self._tx() as cur:
            rows = cur.all(sql, params)
        return [codec.record_from(Run, r) for r in rows]

    def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        if not statuses:
            return []
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM runs WHERE status IN ({codec.marks(len(statuses))})"
                           " ORDER BY id", [s.value for s in statuses])
        return [codec.record_from(Run, r) for r in rows]

    def run_statuses(self, run_ids: Collection[int]) -> dict[int, RunStatus]:
        if not run_ids:
            return {}
        ids = [int(r) for r in run_ids]
        with self._tx() as cur:
            rows = cur.all(f"SELECT id, status FROM runs WHERE id IN ({codec.marks(len(ids))})",
                           ids)
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

    def delete_run(self, run_id: int, user_id: str | None = None) -> None:
        self.get_run(run_id, user_id)
        with self._tx(write=True) as cur:
            for table in (*RUN_LEDGER_TABLES, "portfolios"):
                cur.run(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))
            cur.run("DELETE FROM runs WHERE id = %s", (run_id,))
