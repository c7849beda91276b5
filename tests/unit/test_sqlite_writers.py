"""A SQLite writer that waits for the lock: it gets it once the holder lets go, gives up
with SQLite's own error after the busy timeout, and every statement outside a write
transaction waits on SQLite's own busy timeout again."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from core.store.sqlite import SqliteStore


def holder(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_waiting_writer_gets_the_lock_when_its_holder_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    store.migrate()
    other = holder(store.path)  # type: ignore[arg-type]
    tries = threading.Semaphore(0)
    got: list[int] = []

    def write() -> None:
        conn = store.connect()
        conn.set_trace_callback(lambda sql: tries.release() if sql == "BEGIN IMMEDIATE"
                                else None)
        store.begin_write(conn)
        got.append(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("COMMIT")
    writer = threading.Thread(target=write)
    writer.start()
    for _ in range(3):  # it tried, found the lock held, and tried again
        assert tries.acquire(timeout=5)
    other.execute("COMMIT")
    writer.join(5)
    assert got == [0]  # in WAL, no statement of a write transaction waits for a lock
    assert store.connect().execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_a_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db", busy_timeout_ms=200)
    store.migrate()
    other = holder(store.path)  # type: ignore[arg-type]
    conn = store.connect()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.begin_write(conn)
    assert store.connect().execute("PRAGMA busy_timeout").fetchone()[0] == 200
    assert not conn.in_transaction
    other.execute("ROLLBACK")


def test_a_read_transaction_after_write_ones_waits_on_sqlites_busy_timeout(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    store.migrate()
    for _ in range(2):
        with store._tx(write=True) as cur:
            assert cur.one("PRAGMA busy_timeout") == {"timeout": 0}
    with store._tx() as cur:
        assert cur.one("PRAGMA busy_timeout") == {"timeout": 30_000}


def test_without_wal_a_write_transaction_keeps_the_busy_timeout(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")  # no WAL in memory: a commit would wait for readers
    store.migrate()
    with store._tx(write=True) as cur:
        assert cur.one("PRAGMA busy_timeout") == {"timeout": 30_000}
