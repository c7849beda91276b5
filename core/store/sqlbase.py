"""What every SQL aggregate of the store stands on: a transaction and a dialect.

Queries are written once with `%s` placeholders; a Dialect supplies what differs (value
encoding, row locking, the admission lock, how a unique violation looks). Both stores
use INSERT ... ON CONFLICT and RETURNING, which PostgreSQL and SQLite >= 3.35 share.
Each aggregate (models, runs, ledger, ...) is a mixin on SqlAccess; core.store.sql
composes them into the one SqlStore that PostgreSQL and SQLite subclass.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Protocol

from core.errors import NotFound
from core.store import codec
from core.store.codec import Row


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def insert(cur: Cursor, d: Dialect, table: str, values: Mapping[str, Any],
           tail: str = "") -> int:
    """Insert one row of `values` (column: value, each encoded by its type); `tail` may
    add ON CONFLICT. Returns the number of rows inserted."""
    return cur.run(codec.insert(table, values, tail), codec.columns(d, values))


def insert_row(cur: Cursor, d: Dialect, table: str, values: Mapping[str, Any],
               tail: str) -> Row | None:
    """insert, with a `tail` that ends RETURNING: the row (None: ON CONFLICT skipped it)."""
    return cur.one(codec.insert(table, values, tail), codec.columns(d, values))


def equal_to(wanted: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A condition that the columns given a value (not None, not empty) equal it, TRUE
    when none is, and its parameters."""
    given = {column: value for column, value in wanted.items() if value}
    return " AND ".join(f"{column} = %s" for column in given) or "TRUE", list(given.values())


def owned(row: Row | None, what: str, row_id: int, user_id: str | None) -> Row:
    """The row when it exists and is the user's (`user_id` None: anyone's); NotFound
    otherwise: another user's row is as absent as a missing one."""
    if row is None or (user_id is not None and row["user_id"] != user_id):
        raise NotFound(f"{what} {row_id} not found")
    return row


class Cursor(Protocol):
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def one_each(self, statements: Sequence[tuple[str, Sequence[Any]]]
                 ) -> list[Row | None]:
        """Each statement's first row, in order; in a batch, sent and answered
        together (one round trip)."""
        ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A write whose answer nobody waits for: in a batch transaction (PostgreSQL)
        it goes out with the next statement waited on, or with the commit; its error,
        if any, is raised there and the transaction rolls back. Later writes in a row on
        different tables may run as one statement, on one snapshot: none may read what
        another changes (a foreign key to another's row is checked after both)."""


class Dialect(Protocol):
    for_update: str
    for_share: str
    # Whether several writes can be one statement (PostgreSQL's data-modifying WITH);
    # SQLite runs them one by one in its write transaction.
    chains_writes: bool

    def lock_rows(self, update: str, share: str | None) -> str:
        """The locking clause of a join: `update`'s rows for update, `share`'s (if
        any) in share mode."""

    def money(self, value: Decimal | None) -> Any: ...
    def json(self, value: Any) -> Any: ...
    def time(self, value: dt.datetime | None) -> Any: ...
    def day(self, value: dt.date) -> Any: ...
    def lock_admission(self, cur: Cursor) -> None: ...
    def sum_money(self, expr: str) -> str: ...
    def date_of(self, expr: str) -> str: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...


class SqlAccess(ABC):
    """A database's transactions and dialect, which PostgreSQL and SQLite supply."""

    dialect: Dialect

    @abstractmethod
    def _tx(self, write: bool = False, batch: bool = False) -> AbstractContextManager[Cursor]:
        """A transaction; `write` ones take the database's write lock where it has one.
        In a `batch` one, the cursor's `later` writes may go out together (PostgreSQL's
        pipeline mode): the transaction's writes nothing waits for cost no round trip."""

    def _one_statement(self, write: bool = True) -> AbstractContextManager[Cursor]:
        """A transaction of one statement: PostgreSQL runs it on its own (no BEGIN nor
        COMMIT: one round trip). SQLite, which cannot chain writes in one statement
        (Dialect.chains_writes), runs the statements in a transaction (`write`: a
        write one): in process, they cost no round trip."""
        return self._tx(write=write)

    def _owned_row(self, table: str, what: str, row_id: int, user_id: str | None) -> Row:
        """The row of that id; NotFound when missing or when it belongs to another user
        (`user_id` None: anyone's)."""
        with self._tx() as cur:
            row = cur.one(f"SELECT * FROM {table} WHERE id = %s", (row_id,))
        return owned(row, what, row_id, user_id)

    def _days_between(self, table: str, key: Mapping[str, Any], first: dt.date,
                      last: dt.date) -> set[dt.date]:
        """The days first..last of `table`'s rows whose columns equal `key`'s values."""
        d = self.dialect
        where = " AND ".join(f"{column} = %s" for column in key)
        with self._tx() as cur:
            rows = cur.all(f"SELECT day FROM {table} WHERE {where} AND day >= %s AND day <= %s",
                           (*key.values(), d.day(first), d.day(last)))
        return {codec.day(r["day"]) for r in rows}

    def ping(self) -> None:
        with self._tx() as cur:
            cur.one("SELECT 1 AS ok")
