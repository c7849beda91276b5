"""LLM spend: what decisions consumed per run, user and day, and operators' daily limits.

Admission (core.store.run_status) reads the limits and the day's spend in its own
transaction through `daily_limits` and `spend_by_user`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Collection
from decimal import Decimal

from core.spend import Spend, UsageRow
from core.store import codec
from core.store.sqlbase import Cursor, Dialect, SqlAccess, insert, utcnow


class SpendStore(ABC):
    @abstractmethod
    def run_spend(self, run_id: int) -> Spend:
        """What the run's recorded decisions consumed."""

    @abstractmethod
    def spend_by_user(self, user_ids: Collection[str], since: dt.datetime,
                      until: dt.datetime) -> dict[str, Decimal]:
        """Dollars of LLM cost decided in [since, until), per user (absent: nothing)."""

    @abstractmethod
    def usage(self, user_id: str, since: dt.datetime, until: dt.datetime) -> list[UsageRow]:
        """The user's spend per UTC day and model in [since, until), newest day first."""

    @abstractmethod
    def daily_limits(self, user_ids: Collection[str]) -> dict[str, Decimal | None]:
        """Operators' per-user daily limits (a user without a row has the default; a row
        with None has no limit)."""

    @abstractmethod
    def set_daily_limit(self, user_id: str, daily_cost_usd: Decimal | None, *,
                        by: str) -> None: ...

    @abstractmethod
    def clear_daily_limit(self, user_id: str) -> bool:
        """Back to the default; False when the user had no limit of their own."""


def spend_by_user(cur: Cursor, d: Dialect, user_ids: Collection[str], since: dt.datetime,
                  until: dt.datetime) -> dict[str, Decimal]:
    users = sorted(user_ids)
    rows = cur.all(
        f"SELECT r.user_id, {d.sum_money('d.cost')} AS cost FROM decisions d"
        " JOIN runs r ON r.id = d.run_id"
        f" WHERE r.user_id IN ({codec.marks(len(users))})"
        " AND d.decided_at >= %s AND d.decided_at < %s GROUP BY r.user_id",
        (*users, d.time(since), d.time(until)))
    return {r["user_id"]: codec.opt_dec(r["cost"]) or Decimal(0) for r in rows}


def daily_limits(cur: Cursor, user_ids: Collection[str]) -> dict[str, Decimal | None]:
    users = sorted(user_ids)
    rows = cur.all("SELECT user_id, daily_cost_usd FROM user_limits"
                   f" WHERE user_id IN ({codec.marks(len(users))})", users)
    return {r["user_id"]: codec.opt_dec(r["daily_cost_usd"]) for r in rows}


def _spend_columns(d: Dialect) -> str:
    """A Spend's columns (core.spend.Spend's fields) summed over decisions `d`."""
    return ("COUNT(*) AS decisions, COALESCE(SUM(d.tokens_in), 0) AS tokens_in,"
            " COALESCE(SUM(d.tokens_out), 0) AS tokens_out,"
            " COALESCE(SUM(d.tokens_cached), 0) AS tokens_cached,"
            f" {d.sum_money('d.cost')} AS cost_usd, SUM(CASE WHEN d.cost IS NULL"
            " AND d.tokens_in + d.tokens_out > 0 THEN 1 ELSE 0 END) AS unknown_cost")


class SpendSql(SqlAccess, SpendStore):
    def run_spend(self, run_id: int) -> Spend:
        with self._tx() as cur:
            row = cur.one(f"SELECT {_spend_columns(self.dialect)} FROM decisions d"
                          " WHERE d.run_id = %s", (run_id,))
        assert row is not None
        return codec.record_from(Spend, row)

    def spend_by_user(self, user_ids: Collection[str], since: dt.datetime,
                      until: dt.datetime) -> dict[str, Decimal]:
        if not user_ids:
            return {}
        with self._tx() as cur:
            return spend_by_user(cur, self.dialect, user_ids, since, until)

    def usage(self, user_id: str, since: dt.datetime, until: dt.datetime) -> list[UsageRow]:
        d = self.dialect
        with self._tx() as cur:
            rows = cur.all(
                f"SELECT {d.date_of('d.decided_at')} AS day, m.id AS model_id, m.signature,"
                f" m.llm, {_spend_columns(d)} FROM decisions d"
                " JOIN runs r ON r.id = d.run_id JOIN models m ON m.id = r.model_id"
                " WHERE r.user_id = %s AND d.decided_at >= %s AND d.decided_at < %s"
                " AND (d.tokens_in + d.tokens_out > 0 OR d.cost IS NOT NULL)"  # LLM calls
                " GROUP BY 1, m.id, m.signature, m.llm ORDER BY 1 DESC, m.id",
                (user_id, d.time(since), d.time(until)))
        return [codec.record_from(UsageRow, r, spend=codec.record_from(Spend, r))
                for r in rows]

    def daily_limits(self, user_ids: Collection[str]) -> dict[str, Decimal | None]:
        if not user_ids:
            return {}
        with self._tx() as cur:
            return daily_limits(cur, user_ids)

    def set_daily_limit(self, user_id: str, daily_cost_usd: Decimal | None, *,
                        by: str) -> None:
        values = {"user_id": user_id, "daily_cost_usd": daily_cost_usd,
                  "updated_at": utcnow(), "updated_by": by}
        with self._tx(write=True) as cur:
            insert(cur, self.dialect, "user_limits", values,
                   "ON CONFLICT (user_id) DO UPDATE SET daily_cost_usd = excluded.daily_cost_usd,"
                   " updated_at = excluded.updated_at, updated_by = excluded.updated_by")

    def clear_daily_limit(self, user_id: str) -> bool:
        with self._tx(write=True) as cur:
            return cur.run("DELETE FROM user_limits WHERE user_id = %s", (user_id,)) > 0
