"""PostgreSQL store: psycopg 3 with a connection pool; the system of record."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from importlib import resources
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import StoreUnavailable
from core.store import codec
from core.store.async_reads import PostgresRunReads, RunReads
from core.store.pg_health import checked_if_idle, pooled
from core.store.sql import Cursor, SqlStore

log = logging.getLogger(__name__)

# A connection whose peer went silent (a network path that died, a host cut off) fails
# instead of hanging until the Job's deadline: the caller sees StoreUnavailable and
# retries (a runner plays its step again). An idle one within about 30 s (keepalives);
# one with a query unacknowledged by the peer's kernel within 10 s, which only a lost
# path causes (a busy server's kernel still acknowledges at once). On the test cluster
# such a path was the pod bridge's MAC changing under a new pod (fixed in
# tests/cluster/lib.sh); a real network can lose one the same way.
TCP_LIVENESS = {"keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5,
                "keepalives_count": 3, "tcp_user_timeout": 10_000}

ASYNC_READ_CONNECTIONS = 8  # at most, per process (the API's hot reads)
# One constant key: every admission decision in the cluster is serialized on it.
ADMISSION_LOCK_KEY = 7_461_021
# The channel of tell_controller: NOTIFY reaches every listening controller at once.
CONTROLLER_CHANNEL = "tickrun_controller"
# How long a lost LISTEN connection waits before it connects again.
LISTEN_RETRY_SECONDS = 1.0


# The table a `later` write changes (an INSERT or an UPDATE of one table); other writes
# go alone.
_WRITE_TARGET = re.compile(r"(?:INSERT INTO|UPDATE) (\w+)")


class PostgresCursor:
    """A transaction's statements; in a batch (`pipeline`), a statement goes out when
    its answer is waited for, with every statement queued before it."""

    def __init__(self, cur: psycopg.Cursor[dict[str, Any]],
                 pipeline: psycopg.Pipeline | None = None) -> None:
        self._cur = cur
        self._pipeline = pipeline
        self._later: list[tuple[str, Sequence[Any], str | None]] = []

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[codec.Row]:
        self.send_later()
        self._cur.execute(sql, params)
        return self._cur.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> codec.Row | None:
        self.send_later()
        self._cur.execute(sql, params)
        return self._cur.fetchone()

    def one_each(self, statements: Sequence[tuple[str, Sequence[Any]]]
                 ) -> list[codec.Row | None]:
        self.send_later()
        if self._pipeline is None:
            return [self.one(sql, params) for sql, params in statements]
        # A cursor each, all queued before the first answer is waited for.
        extra = [self._cur.connection.cursor() for _ in statements[1:]]
        cursors = [self._cur, *extra]
        for cur, (sql, params) in zip(cursors, statements, strict=True):
            cur.execute(sql, params)
        try:
            return [cur.fetchone() for cur in cursors]
        finally:
            for cur in extra:
                cur.close()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.send_later()
        self._cur.execute(sql, params)
        if self._pipeline is not None:  # the row count is the answer waited for
            self._pipeline.sync()
        return self._cur.rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.send_later()
        self._cur.executemany(sql, rows)

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        # Its result is never read. In a batch it is kept until the next statement (or
        # the COMMIT) and sent with the writes kept beside it.
        if self._pipeline is None:
            self._cur.execute(sql, params)
            return
        found = _WRITE_TARGET.match(sql)
        self._later.append((sql, params, found.group(1) if found else None))

    def send_later(self) -> None:
        """The writes `later` kept, in order; those in a row on different tables go as
        one statement (a data-modifying WITH: one statement's cost, not one each, which
        was a sixth of a trade's CPU). One table's writes stay apart: two changes to one
        row in one statement would leave only one of them."""
        group: list[tuple[str, Sequence[Any], str | None]] = []
        for write in self._later:
            table = write[2]
            if table is None or any(table == g[2] for g in group):
                self._send_group(group)
                group = []
            if table is None:  # not a plain INSERT or UPDATE: alone, never in a WITH
                self._send_group([write])
            else:
                group.append(write)
        self._send_group(group)
        self._later = []

    def _send_group(self, group: list[tuple[str, Sequence[Any], str | None]]) -> None:
        if not group:
            return
        *first, last = group
        sql = ("WITH " + ", ".join(f"w{i} AS ({s})" for i, (s, _, _) in enumerate(first))
               + " " if first else "") + last[0]
        self._cur.execute(sql, [p for _, params, _ in group for p in params])


class PostgresDialect:
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    chains_writes = True

    def lock_rows(self, update: str, share: str | None) -> str:
        return f" FOR UPDATE OF {update}" + (f" FOR SHARE OF {share}" if share else "")

    def money(self, value: Decimal | None) -> Any:
        return value

    def json(self, value: Any) -> Any:
        return Jsonb(value)

    def time(self, value: dt.datetime | None) -> Any:
        return value

    def day(self, value: dt.date) -> Any:
        return value

    def sum_money(self, expr: str) -> str:
        return f"SUM({expr})"

    def date_of(self, expr: str) -> str:
        return f"({expr} AT TIME ZONE 'UTC')::date"

    def lock_admission(self, cur: Cursor) -> None:
        cur.one("SELECT pg_advisory_xact_lock(%s) AS locked", (ADMISSION_LOCK_KEY,))

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)


class PostgresStore(SqlStore):
    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 10.0) -> None:
        self.dialect = PostgresDialect()
        self._conninfo = conninfo
        self._pool = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, timeout=timeout, open=True,
            # autocommit: a transaction is always explicit (conn.transaction(), or a
            # batch's own BEGIN), and a statement outside one is its own transaction.
            kwargs={"row_factory": dict_row, "autocommit": True, **TCP_LIVENESS},
            check=checked_if_idle,
        )

    def async_reads(self) -> RunReads:
        # Few connections: an API worker is CPU-bound long before eight reads of a
        # fraction of a millisecond each wait on the pool, and every API worker's pool
        # counts against the server's max_connections beside the store's own.
        return PostgresRunReads(self._conninfo, self.dialect,
                                max_size=min(self._pool.max_size, ASYNC_READ_CONNECTIONS),
                                connect_kwargs=TCP_LIVENESS)

    @contextmanager
    def _tx(self, write: bool = False, batch: bool = False) -> Iterator[Cursor]:
        with answering(), pooled(self._pool) as conn:
            if batch:
                with _batch(conn) as cur:
                    yield cur
                return
            with conn.transaction(), conn.cursor() as cur:
                yield PostgresCursor(cur)

    @contextmanager
    def _one_statement(self, write: bool = True) -> Iterator[Cursor]:
        # No BEGIN nor COMMIT: the statement is its own transaction (autocommit).
        with answering(), pooled(self._pool) as conn, conn.cursor() as cur:
            yield PostgresCursor(cur)

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with pooled(self._pool) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK_KEY + 1,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.cursor(row_factory=tuple_row).execute(
                "SELECT name FROM schema_migrations")}
            for name, sql in migration_scripts("postgres"):
                if name in done:
                    continue
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
        return applied

    def close(self) -> None:
        self._pool.close()

    def tell_controller(self, run_ids: Sequence[int]) -> None:
        with self._tx() as cur:
            cur.one("SELECT pg_notify(%s, %s) AS sent",
                    (CONTROLLER_CHANNEL, ",".join(str(i) for i in run_ids)))

    def listen_for_controller(self, stop: threading.Event, wake: Callable[[], None]) -> None:
        """LISTEN on a connection of its own, connected again when lost; each (re)connect
        wakes the controller once too, for what was sent while it was away."""
        while not stop.is_set():
            try:
                with psycopg.connect(make_conninfo(self._conninfo, **TCP_LIVENESS),
                                     autocommit=True) as conn:
                    conn.execute(f"LISTEN {CONTROLLER_CHANNEL}")
                    wake()
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            wake()
            except psycopg.Error as exc:
                log.warning("controller channel lost (%s); listening again in %.0fs", exc,
                            LISTEN_RETRY_SECONDS)
                stop.wait(LISTEN_RETRY_SECONDS)


@contextmanager
def _batch(conn: psycopg.Connection[Any]) -> Iterator[Cursor]:
    """A transaction in pipeline mode whose BEGIN and COMMIT are statements of its own
    (psycopg's transaction would wait for each): the BEGIN goes out with the first read,
    the COMMIT with the writes queued last, and nothing else is waited for. After an
    error the pipeline is left first, then the transaction rolled back (should that
    fail too, the pool rolls back a connection returned inside a transaction)."""
    committed = False
    try:
        with conn.cursor() as cur:
            with conn.pipeline() as pipeline:
                cur.execute("BEGIN")
                batch = PostgresCursor(cur, pipeline)
                yield batch
                batch.send_later()
                cur.execute("COMMIT")
            committed = True
    finally:
        if not committed and not conn.closed:
            conn.execute("ROLLBACK")


@contextmanager
def answering() -> Iterator[None]:
    """One word for "the database does not answer": the API says 503, a runner waits
    and retries its step (every step's writes are idempotent)."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailable(f"the database does not answer: {exc}".strip()[:300],
                               delay=2.0) from exc


def migration_scripts(dialect: str) -> list[tuple[str, str]]:
    folder = resources.files("core") / "migrations" / dialect
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")),
                   key=lambda p: p.name)
    return [(p.name, p.read_text()) for p in files]
