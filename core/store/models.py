"""Models: a user's named agent configurations (signature, LLM, rules, parameters)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from core.errors import Conflict, NotFound
from core.records import Model
from core.store import codec
from core.store.sqlbase import Cursor, SqlAccess, insert_row, utcnow

# What update_model may change.
MODEL_FIELDS = ("signature", "llm", "custom_rules", "custom_instructions", "parameters")


class ModelStore(ABC):
    @abstractmethod
    def create_model(
        self,
        user_id: str,
        signature: str,
        *,
        llm: str | None = None,
        custom_rules: str | None = None,
        custom_instructions: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Model: ...

    @abstractmethod
    def get_model(self, model_id: int, user_id: str | None = None) -> Model:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_models(self, user_id: str, *, after_id: int | None = None,
                    limit: int = 50) -> list[Model]: ...

    @abstractmethod
    def update_model(self, model_id: int, user_id: str, changes: dict[str, Any]) -> Model: ...

    @abstractmethod
    def delete_model(self, model_id: int, user_id: str) -> None: ...


def require_model(cur: Cursor, model_id: int, user_id: str) -> None:
    """NotFound unless the user has that model (in the caller's transaction)."""
    if cur.one("SELECT id FROM models WHERE id = %s AND user_id = %s",
               (model_id, user_id)) is None:
        raise NotFound(f"model {model_id} not found")


class ModelsSql(SqlAccess, ModelStore):
    def create_model(self, user_id: str, signature: str, *, llm: str | None = None,
                     custom_rules: str | None = None, custom_instructions: str | None = None,
                     parameters: dict[str, Any] | None = None) -> Model:
        now = utcnow()
        values = {"user_id": user_id, "signature": signature, "llm": llm,
                  "custom_rules": custom_rules, "custom_instructions": custom_instructions,
                  "parameters": parameters or {}, "created_at": now, "updated_at": now}
        with self._tx(write=True) as cur:
            row = insert_row(cur, self.dialect, "models", values,
                         "ON CONFLICT (user_id, signature) DO NOTHING RETURNING *")
        if row is None:
            raise Conflict(f"a model with signature {signature!r} already exists")
        return codec.record_from(Model, row)

    def get_model(self, model_id: int, user_id: str | None = None) -> Model:
        return codec.record_from(Model, self._owned_row("models", "model", model_id, user_id))

    def list_models(self, user_id: str, *, after_id: int | None = None,
                    limit: int = 50) -> list[Model]:
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM models WHERE user_id = %s AND id > %s ORDER BY id LIMIT %s",
                (user_id, after_id or 0, limit),
            )
        return [codec.record_from(Model, r) for r in rows]

    def update_model(self, model_id: int, user_id: str, changes: dict[str, Any]) -> Model:
        unknown = set(changes) - set(MODEL_FIELDS)
        if unknown:
            raise ValueError(f"unknown model fields: {sorted(unknown)}")
        self.get_model(model_id, user_id)
        if not changes:
            return self.get_model(model_id, user_id)
        d = self.dialect
        assignments = ", ".join(f"{k} = %s" for k in changes)
        try:
            with self._tx(write=True) as cur:
                row = cur.one(
                    f"UPDATE models SET {assignments}, updated_at = %s"
                    " WHERE id = %s AND user_id = %s RETURNING *",
                    (*codec.columns(d, changes), d.time(utcnow()), model_id, user_id),
                )
        except Exception as exc:
            if d.is_unique_violation(exc):
                raise Conflict(f"a model with signature {changes.get('signature')!r} "
                               "already exists") from exc
            raise
        if row is None:
            raise NotFound(f"model {model_id} not found")
        return codec.record_from(Model, row)

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
