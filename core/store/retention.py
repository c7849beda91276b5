"""Retention: final runs old enough to go, found a keyset page at a time and deleted
with everything of theirs in one transaction each (core.retention archives first)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from core.records import Run
from core.status import TERMINAL, RunStatus
from core.store import codec
from core.store.ledger import RUN_LEDGER_TABLES
from core.store.sqlbase import SqlAccess


class RetentionStore(ABC):
    @abstractmethod
    def prunable_runs(self, finished_before: dt.datetime, *,
                      after: tuple[dt.datetime, int] | None = None,
                      limit: int = 100) -> list[Run]:
        """Final runs (completed, failed, stopped) that finished before `finished_before`,
        oldest first by (finished_at, id), a keyset page after `after`. A run that is not
        final, or has no finished_at, is never among them."""

    @abstractmethod
    def delete_finished_run(self, run_id: int, *, finished_before: dt.datetime,
                            expect_rows: Mapping[str, int] | None = None) -> bool:
        """Delete a final run that finished before `finished_before` and everything of it
        (decisions, trades, positions, portfolio) in one transaction. The run is locked
        and checked again inside it: False, and nothing deleted, when it is gone, not
        final, not that old, or when a table of `expect_rows` (decisions, trades,
        positions) holds another number of its rows than the caller archived."""


class RetentionSql(SqlAccess, RetentionStore):
    def prunable_runs(self, finished_before: dt.datetime, *,
                      after: tuple[dt.datetime, int] | None = None,
                      limit: int = 100) -> list[Run]:
        d = self.dialect
        final = [s.value for s in TERMINAL]
        where = (f"status IN ({codec.marks(len(final))})"
                 " AND finished_at IS NOT NULL AND finished_at < %s")
        params: list[Any] = [*final, d.time(finished_before)]
        if after is not None:
            where += " AND (finished_at > %s OR (finished_at = %s AND id > %s))"
            params += [d.time(after[0]), d.time(after[0]), after[1]]
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM runs WHERE {where} ORDER BY finished_at, id"
                           " LIMIT %s", (*params, limit))
        return [codec.record_from(Run, r) for r in rows]

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
