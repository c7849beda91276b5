"""SQLite store: the embedded default for `tickrun dev`, same semantics as PostgreSQL.

Writes take SQLite's database lock up front (BEGIN IMMEDIATE), which is what makes a
portfolio "locked" here; WAL lets readers go on meanwhile. One connection per thread
and file: a thread's stores of one file (a runner's store and its event log) share it,
so one transaction can hold the writes of both (commit_together) and neither waits for
a lock the other holds.

A writer waiting for the lock tries again every few milliseconds (with jitter), not on
SQLite's own busy handler: that one sleeps 100 ms between tries once it has waited a
third of a second, so among twenty runners writing every step, a waiting writer lost
the lock to the others for seconds (a stop took 3.5 s; `python -m bench sqlite_writers`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.store import codec
from core.store.postgres import migration_scripts
from core.store.sql import Cursor, SqlStore


class SqliteCursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%s", "?")

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[codec.Row]:
        return [dict(r) for r in self._conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> codec.Row | None:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        row = cur.fetchone()
        cur.fetchall()  # finish the statement so RETURNING rows are committed with it
        return None if row is None else dict(row)

    def one_each(self, statements: Sequence[tuple[str, Sequence[Any]]]
                 ) -> list[codec.Row | None]:
        return [self.one(sql, params) for sql, params in statements]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(self._sql(sql), tuple(params)).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(self._sql(sql), [tuple(r) for r in rows])

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.run(sql, params)  # in process: nothing to gain by waiting


class SqliteDialect:
    for_update = ""  # a write transaction holds the whole database
    for_share = ""
    chains_writes = False  # no data-modifying WITH: a write transaction's statements

    def lock_rows(self, update: str, share: str | None) -> str:
        return ""

    def money(self, value: Decimal | None) -> Any:
        return None if value is None else str(value)

    def json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"))

    def time(self, value: dt.datetime | None) -> Any:
        return None if value is None else value.astimezone(dt.UTC).isoformat()

    def day(self, value: dt.date) -> Any:
        return value.isoformat()

    def sum_money(self, expr: str) -> str:
        # SQLite's SUM of TEXT numbers is a float; money is summed as Decimal.
        return f"decimal_sum({expr})"

    def date_of(self, expr: str) -> str:
        return f"substr({expr}, 1, 10)"  # ISO times in UTC: the UTC date

    def lock_admission(self, cur: Cursor) -> None:
        """BEGIN IMMEDIATE already serializes every writer."""

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)


class DecimalSum:
    """SUM for money stored as TEXT: exact, NULL when every value is NULL."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = (self.total or Decimal(0)) + Decimal(value)

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


class _Together:
    """The outcome of a commit_together: None while it is open."""

    def __init__(self) -> None:
        self.committed: bool | None = None

    def check(self) -> None:
        if self.committed is False:
            raise sqlite3.OperationalError("the transaction these writes were in rolled back")


@contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("SAVEPOINT tx")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO tx")
        conn.execute("RELEASE tx")
        raise
    conn.execute("RELEASE tx")


# The longest sleep between two tries of a waiting writer: a step's transaction holds the
# lock for a few milliseconds, so a writer that sleeps longer mostly finds it taken again.
WRITE_RETRY_MAX_SECONDS = 0.004


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class _Connection:
    """A thread's connection to a database file, and its state."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        conn.row_factory = sqlite3.Row
        conn.create_aggregate("decimal_sum", 1, DecimalSum)  # type: ignore[arg-type]  # typeshed wants int
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.conn = conn
        self.wal = str(mode).lower() == "wal"
        self.busy_timeout_ms = busy_timeout_ms  # as set now (begin_write sets 0)
        self.together: _Together | None = None  # the commit_together open, if any
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.conn.close()


# Per thread: each file's connection, while a store of this thread uses it.
_SHARED = threading.local()


def _shared(key: tuple[Any, ...]) -> _Connection | None:
    found: _Connection | None = getattr(_SHARED, "files", {}).get(key)
    return None if found is None or found.closed else found


def _share(key: tuple[Any, ...], state: _Connection) -> None:
    if not hasattr(_SHARED, "files"):
        _SHARED.files = weakref.WeakValueDictionary()
    _SHARED.files[key] = state


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.dialect = SqliteDialect()
        self.path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        # The file however its path is spelled; in memory, each connection is a
        # database of its own: nothing to share.
        self._key = ((os.path.realpath(self.path),) if self.path != ":memory:"
                     else (object(),))
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def _state(self) -> _Connection:
        """This thread's connection to the file (the one its other stores of the file
        use, if any), open."""
        state: _Connection | None = getattr(self._local, "state", None)
        if state is None or state.closed:
            state = _shared(self._key)
            if state is None:
                state = _Connection(self.path, self._busy_timeout_ms)
                _share(self._key, state)
            self._local.state = state  # kept alive while this store uses it
        return state

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, its busy timeout as the last statement left it."""
        return self._state().conn

    def connect(self) -> sqlite3.Connection:
        """This thread's connection, its statements waiting for a lock on SQLite's busy
        handler (the busy timeout)."""
        state = self._state()
        self._be_patient(state)
        return state.conn

    def _be_patient(self, state: _Connection) -> None:
        """This store's busy timeout on the connection (its other stores' may differ)."""
        if state.busy_timeout_ms != self._busy_timeout_ms:
            state.conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            state.busy_timeout_ms = self._busy_timeout_ms

    def begin_write(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE on this thread's connection (`conn`), tried again every few
        milliseconds until the busy timeout.

        The busy timeout stays 0 after it until a statement outside a write transaction
        (connect, a read transaction) sets it back: in WAL mode no statement of a write
        transaction waits for a lock (BEGIN IMMEDIATE took the only one it needs), so a
        runner whose transactions are all writes does not set it twice a transaction.
        Without WAL a commit waits for readers: set back at once."""
        state = self._state()
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        sleep = WRITE_RETRY_MAX_SECONDS / 8
        if state.busy_timeout_ms:
            conn.execute("PRAGMA busy_timeout=0")
            state.busy_timeout_ms = 0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(sleep * random.uniform(0.5, 1.5))
            sleep = min(sleep * 1.5, WRITE_RETRY_MAX_SECONDS)
        if not state.wal:
            self._be_patient(state)

    @contextmanager
    def _tx(self, write: bool = False, batch: bool = False) -> Iterator[Cursor]:
        state = self._state()
        conn = state.conn
        if state.together is not None:
            with _savepoint(conn):
                yield SqliteCursor(conn)
            return
        if write:
            self.begin_write(conn)
        else:
            self._be_patient(state)
            conn.execute("BEGIN")
        try:
            yield SqliteCursor(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def commit_together(self) -> Iterator[None]:
        """One write transaction for the transactions made inside on this thread (by
        any store of the file: the event log's too): each is a savepoint of it, all or
        nothing as before even when its error is caught inside, and one COMMIT ends
        them. A step's decision and its events take the lock once and commit once
        (the commit is a step's dearest statement here)."""
        state = self._state()
        if state.together is not None:
            yield  # already inside one
            return
        self.begin_write(state.conn)
        outcome = state.together = _Together()
        try:
            yield
        except BaseException:
            state.together = None
            outcome.committed = False
            state.conn.execute("ROLLBACK")
            raise
        state.together = None
        try:
            state.conn.execute("COMMIT")
        except BaseException:
            outcome.committed = False
            if state.conn.in_transaction:
                state.conn.execute("ROLLBACK")
            raise
        outcome.committed = True

    def commit_check(self) -> Callable[[], None] | None:
        """What raises, when called, if the writes made until now on this thread were
        rolled back: the commit_together open now ended without its commit. None
        outside one: those writes committed already."""
        outcome = self._state().together
        return None if outcome is None else outcome.check

    @contextmanager
    def write_connection(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (as _tx's) on this thread's connection itself, for rows
        the store's SQL aggregates do not write (the event log's)."""
        with self._tx(write=True):
            yield self._connection()

    def migrate(self) -> list[str]:
        # Processes that start at once on one file (the API's workers, `tickrun dev`)
        # all migrate: one at a time, each reading what is applied under the lock. The
        # lock is a file of its own: a second descriptor of the database would drop
        # SQLite's POSIX locks when closed.
        with self._migration_lock():
            return self._migrate()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.path == ":memory:":
            yield
            return
        with open(f"{self.path}-migrations.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _migrate(self) -> list[str]:
        conn = self.connect()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY,"
            " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in migration_scripts("sqlite"):
            if name in done:
                continue
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n"
                               f"INSERT INTO schema_migrations (name) VALUES ('{name}');\nCOMMIT;")
            applied.append(name)
        return applied

    def tell_controller(self, run_ids: Sequence[int]) -> None:
        """Nothing to send: the embedded default's controller is in the API's process
        and is woken there."""

    def listen_for_controller(self, stop: threading.Event, wake: Callable[[], None]) -> None:
        """No channel: returns at once (the embedded controller is woken in-process)."""

    def close(self) -> None:
        """Close this thread's connection to the file (its other stores of the file
        open a new one when they next need it)."""
        state: _Connection | None = getattr(self._local, "state", None)
        if state is not None:
            state.close()
            self._local.state = None
