"""Migrations: one command, idempotent, Supabase RLS only where `auth` exists."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from core.store import open_store
from core.store.postgres import migration_scripts
from tests.servers import Postgres


@pytest.fixture
def empty_database(postgres_server: Postgres) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = postgres_server.url(database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(database=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def migrate(url: str) -> str:
    env = {**os.environ, "TICKRUN_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "core.migrate"], env=env, check=True,
                          capture_output=True, text=True)
    assert "postgresql://" not in done.stdout + done.stderr  # no credentials printed
    return done.stdout


def policies(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_policies")}


def test_plain_postgres_gets_tables_and_no_policies(empty_database: str) -> None:
    assert "applied 11 migration(s)" in migrate(empty_database)
    assert "applied 0 migration(s)" in migrate(empty_database)
    assert policies(empty_database) == set()


def test_supabase_gets_row_level_security(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA auth")
        conn.execute("CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS "
                     "$$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')"
                     "::uuid $$")
    migrate(empty_database)
    assert policies(empty_database) == {"models", "runs", "portfolios", "trades", "positions",
                                        "decisions", "user_limits", "batches", "schedules",
                                        "orders", "order_events"}


def test_sqlite_migrates_by_the_same_command(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert "applied 10 migration(s)" in migrate(url)
    assert "applied 0 migration(s)" in migrate(url)


# -- 0003 (PostgreSQL) / 0002 (SQLite): fill times for the rows that existed before ------
BEFORE = "2025-03-03T14:30:00+00:00"
OLD_ROWS = [
    "INSERT INTO models (id, user_id, signature, created_at, updated_at)"
    f" VALUES (1, 'u', 's', '{BEFORE}', '{BEFORE}')",
    "INSERT INTO runs (id, user_id, model_id, spec, mode, symbols, status, steps_total,"
    f" created_at) VALUES (1, 'u', 1, '{{}}', 'daily', 'MSFT', 'completed', 1, '{BEFORE}')",
    "INSERT INTO trades (run_id, step, seq, bar_time, side, symbol, quantity, price, fees,"
    " status, reason, cash_after, created_at) VALUES"
    f" (1, 0, 0, '{BEFORE}', 'buy', 'MSFT', '1', '10', '0', 'filled', NULL, '90', '{BEFORE}'),"
    f" (1, 0, 1, '{BEFORE}', 'buy', 'MSFT', '99', '10', '0', 'refused', 'cash', '90',"
    f" '{BEFORE}')",
    "INSERT INTO positions (run_id, step, seq, bar_time, action, symbol, cash, holdings)"
    f" VALUES (1, 0, 0, '{BEFORE}', 'buy', 'MSFT', '90', '{{\"MSFT\": \"1\"}}')",
    # A decision from before 0006/0005: decided at its run's last known time.
    "INSERT INTO decisions (run_id, step, bar_time, action, outcome, tokens_in, cost)"
    f" VALUES (1, 0, '{BEFORE}', 'buy', 'trade', 100, '0.01')",
    # An operator's own bar (0005/0004 key bars by source: it becomes source `table`).
    "INSERT INTO stock_prices (symbol, interval, bar_time, open, high, low, close, volume)"
    f" VALUES ('MSFT', '1m', '{BEFORE}', '10', '11', '9', '10.5', '100')",
]


def check_old_rows_got_fill_times(url: str) -> None:
    store = open_store(url, pool_size=1)
    try:
        assert store.migrate() == []  # the command above applied everything
        at = dt.datetime.fromisoformat(BEFORE)
        trades = store.list_trades(1)
        assert [(t.bar_time, t.filled_at) for t in trades] == [(at, at), (at, None)]
        assert [(p.bar_time, p.filled_at) for p in store.list_positions(1)] == [(at, at)]
        [bar] = store.load_prices("MSFT", "1m", at, at)
        assert (bar.source, bar.close, bar.volume) == ("table", 10.5, 100)
        [decision] = store.list_decisions(1)
        assert (decision.decided_at, decision.tokens_cached) == (at, 0)
    finally:
        store.close()


def test_postgres_fill_time_migration_backfills_existing_rows(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY,"
                     " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for name, sql in migration_scripts("postgres")[:2]:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        for statement in OLD_ROWS:
            conn.execute(statement.encode())
    assert "applied 9 migration(s): 0003_fill_time_and_ledger_indexes.sql, 0004_" in migrate(
        empty_database)
    check_old_rows_got_fill_times(empty_database)
    with psycopg.connect(empty_database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(  # a fill without a fill time cannot be written
            "INSERT INTO trades (run_id, step, seq, bar_time, side, symbol, quantity, price,"
            " status, cash_after) VALUES (1, 1, 0, now(), 'buy', 'MSFT', 1, 1, 'filled', 0)")


def test_sqlite_fill_time_migration_backfills_existing_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY,"
                     " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        name, sql = migration_scripts("sqlite")[0]
        conn.executescript(sql)
        conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))
        for statement in OLD_ROWS:
            conn.execute(statement)
        conn.commit()
    assert "applied 9 migration(s): 0002_fill_time_and_ledger_indexes.sql, 0003_" in migrate(
        f"sqlite:///{path}")
    check_old_rows_got_fill_times(f"sqlite:///{path}")


def test_processes_starting_at_once_on_a_new_sqlite_file_all_migrate_it(
        tmp_path: Path) -> None:
    """The API's workers (and `tickrun dev`'s processes) migrate on start, at the same
    moment: each must find the schema complete, none may fail on another's migration."""
    db = tmp_path / "new.sqlite"
    code = ("import sys; from core.store.sqlite import SqliteStore;"
            " SqliteStore(sys.argv[1]).migrate()")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    processes = [subprocess.Popen([sys.executable, "-c", code, str(db)], env=env,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
    failures = [p.communicate(timeout=60)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, "\n".join(failures)
    with closing(sqlite3.connect(db)) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
    assert sorted(applied) == sorted(name for name, _ in migration_scripts("sqlite"))
