"""Batches: one request's matrix of runs, queued together in one transaction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import Conflict, NotFound
from core.records import Batch, Run
from core.spec import RunSpec
from core.store import codec
from core.store.runs import insert_run
from core.store.sqlbase import SqlAccess, insert_row, utcnow


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One cell of a batch's matrix: a run to queue."""

    model_id: int
    spec: RunSpec
    steps_total: int


class BatchStore(ABC):
    @abstractmethod
    def create_batch(self, user_id: str, name: str | None, template: dict[str, Any],
                     runs: Sequence[BatchRun], *, idempotency_key: str | None = None,
                     request_hash: str | None = None) -> tuple[Batch, list[Run], bool]:
        """The batch and all its queued runs (with portfolios) in one transaction;
        (batch, runs in matrix order, created). An idempotency key seen before returns
        the first batch and its runs (a Conflict when the request hash differs)."""

    @abstractmethod
    def get_batch(self, batch_id: int, user_id: str | None = None) -> Batch:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_batches(self, user_id: str, *, before_id: int | None = None,
                     limit: int = 50) -> list[Batch]:
        """The user's batches, newest first."""


class BatchesSql(SqlAccess, BatchStore):
    def create_batch(self, user_id: str, name: str | None, template: dict[str, Any],
                     runs: Sequence[BatchRun], *, idempotency_key: str | None = None,
                     request_hash: str | None = None) -> tuple[Batch, list[Run], bool]:
        d, now = self.dialect, utcnow()
        values = {"user_id": user_id, "name": name, "template": template, "created_at": now,
                  "idempotency_key": idempotency_key, "request_hash": request_hash}
        with self._tx(write=True) as cur:
            row = insert_row(cur, d, "batches", values,
                         "ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *")
            if row is None:
                existing = cur.one(
                    "SELECT * FROM batches WHERE user_id = %s AND idempotency_key = %s",
                    (user_id, idempotency_key))
                assert existing is not None
                if existing["request_hash"] != request_hash:
                    raise Conflict("this Idempotency-Key was used with a different request body")
                rows = cur.all("SELECT * FROM runs WHERE batch_id = %s ORDER BY id",
                               (existing["id"],))
                return (codec.record_from(Batch, existing),
                        [codec.record_from(Run, r) for r in rows], False)
            models = {int(m["id"]) for m in cur.all(
                "SELECT id FROM models WHERE user_id = %s", (user_id,))}
            made = []
            for cell in runs:
                if cell.model_id not in models:
                    raise NotFound(f"model {cell.model_id} not found")
                run = insert_run(cur, d, user_id, cell.model_id, cell.spec, cell.steps_total,
                                 now, batch_id=int(row["id"]))
                assert run is not None
                made.append(codec.record_from(Run, run))
        return codec.record_from(Batch, row), made, True

    def get_batch(self, batch_id: int, user_id: str | None = None) -> Batch:
        return codec.record_from(Batch, self._owned_row("batches", "batch", batch_id, user_id))

    def list_batches(self, user_id: str, *, before_id: int | None = None,
                     limit: int = 50) -> list[Batch]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM batches WHERE user_id = %s AND id < %s ORDER BY id DESC"
                " LIMIT %s", (user_id, before_id or 2**63 - 1, limit))
        return [codec.record_from(Batch, r) for r in rows]
