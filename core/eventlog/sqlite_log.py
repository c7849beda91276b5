"""SQLite event log for the embedded default: rows in the same database file.

A reader waiting for new events polls with a short sleep: SQLite has no cross-process
notification, and the embedded default serves a handful of followers, not thousands.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.eventlog.base import Event, EventLog, EventType, already_answered
from core.store.sqlite import SqliteStore

POLL_SECONDS = 0.05


class SqliteEventLog(EventLog):
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def append(self, run_id: int, type: EventType, data: dict[str, Any]) -> str:
        return _insert(self._store.connect(), run_id, type, data)

    def read(self, run_id: int, after: str | None = None, *, count: int = 500,
             block_ms: int = 0) -> list[Event]:
        deadline = time.monotonic() + block_ms / 1000
        after_id = int(after) if after else 0
        while True:
            rows = self._store.connect().execute(
                "SELECT id, type, data, created_at FROM events WHERE run_id = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (run_id, after_id, count),
            ).fetchall()
            if rows or time.monotonic() >= deadline:
                return [Event(id=str(r[0]), run_id=run_id, type=EventType(r[1]),
                              data=json.loads(r[2]), time=dt.datetime.fromisoformat(r[3]))
                        for r in rows]
            time.sleep(POLL_SECONDS)

    def last_id(self, run_id: int) -> str | None:
        row = self._store.connect().execute(
            "SELECT MAX(id) FROM events WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # The store's write transaction on this thread's connection: one commit for the
    # lot, nothing of it on an error.
    def append_each(self, events: Sequence[tuple[int, EventType, dict[str, Any]]]) -> None:
        with self._store.write_connection() as conn:
            for run_id, type, data in events:
                _insert(conn, run_id, type, data)

    def append_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                     progress: dict[str, Any] | None = None) -> None:
        with self._store.write_connection() as conn:
            for type, data in events:
                _insert(conn, run_id, type, data)
            if progress:
                _merge_progress(conn, run_id, progress)

    def send_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                   progress: dict[str, Any] | None = None) -> Callable[[], None]:
        """append_batch; inside the store's commit_together (a step's), its answer
        raises if that transaction rolled back, so the events are sent again."""
        self.append_batch(run_id, events, progress)
        return self._store.commit_check() or already_answered

    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None:
        _merge_progress(self._store.connect(), run_id, progress)

    def get_progress(self, run_id: int) -> dict[str, Any]:
        return _progress(self._store.connect(), run_id)

    def finish(self, run_id: int) -> None:
        """Events stay as long as the run does; deleting the run removes them."""

    def delete(self, run_id: int) -> None:
        conn = self._store.connect()
        conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM run_progress WHERE run_id = ?", (run_id,))

    def ping(self) -> None:
        self._store.connect().execute("SELECT 1")

    def close(self) -> None:
        self._store.close()


def _insert(conn: sqlite3.Connection, run_id: int, type: EventType,
            data: dict[str, Any]) -> str:
    cur = conn.execute(
        "INSERT INTO events (run_id, type, data, created_at) VALUES (?, ?, ?, ?)",
        (run_id, type.value, json.dumps(data, separators=(",", ":"), default=str),
         dt.datetime.now(dt.UTC).isoformat()),
    )
    return str(cur.lastrowid)


def _progress(conn: sqlite3.Connection, run_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT data FROM run_progress WHERE run_id = ?", (run_id,)).fetchone()
    return {} if row is None else dict(json.loads(row[0]))


def _merge_progress(conn: sqlite3.Connection, run_id: int, progress: dict[str, Any]) -> None:
    merged = {**_progress(conn, run_id), **progress}
    conn.execute(
        "INSERT INTO run_progress (run_id, data) VALUES (?, ?)"
        " ON CONFLICT (run_id) DO UPDATE SET data = excluded.data",
        (run_id, json.dumps(merged, default=str)),
    )
