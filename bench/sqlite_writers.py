"""`python -m bench sqlite_writers`: how long a write waits for SQLite's lock while many
runners write their steps (the embedded default's stop storm).

Twenty processes play runners: every 40 ms each writes a step in one transaction, its
events and progress and 2 ms of work under the lock (a step that trades: the ledger's
checks and rows; 21 processes on 2 cores also lose their core in the middle of one). A
twenty-first plays the API: ten times a second it makes one write (what a stop is) and
measures how long BEGIN IMMEDIATE waited. Two rounds on a new database each: tickrun's
writers (a try every few milliseconds), then SQLite's own busy handler (sleeps of up to
100 ms), the way every write waited before. Both rounds share the machine's cores with
the runners, as in `tickrun dev`.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._support import emit, percentile
from core.eventlog import EventType
from core.eventlog.sqlite_log import SqliteEventLog
from core.store.sqlite import SqliteStore

WRITERS = 20
STEP_SECONDS = 0.04
HOLD_SECONDS = 0.002
ROUND_SECONDS = 15.0


class SqliteHandlerStore(SqliteStore):
    """The store as it was: BEGIN IMMEDIATE waits on SQLite's busy handler."""

    def begin_write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")


def _store(path: Path, sqlite_handler: bool) -> SqliteStore:
    return (SqliteHandlerStore if sqlite_handler else SqliteStore)(path)


def _runner(path: Path, run_id: int, sqlite_handler: bool, until: float) -> None:
    store = _store(path, sqlite_handler)
    log, conn = SqliteEventLog(store), store.connect()
    step = 0
    while time.time() < until:
        step += 1
        store.begin_write(conn)
        log.append(run_id, EventType.DECISION, {"step": step, "action": "hold"})
        log.append(run_id, EventType.PROGRESS, {"step": step, "total": 390})
        log.set_progress(run_id, {"step": step, "total": 390})
        busy = time.perf_counter() + HOLD_SECONDS
        while time.perf_counter() < busy:
            pass
        conn.execute("COMMIT")
        time.sleep(STEP_SECONDS)


def _stopper(path: Path, sqlite_handler: bool, until: float, waits: Any) -> None:
    store = _store(path, sqlite_handler)
    conn = store.connect()
    time.sleep(1.0)  # every runner is writing
    found: list[float] = []
    while time.time() < until - 1.0:
        start = time.perf_counter()
        store.begin_write(conn)
        found.append(time.perf_counter() - start)
        conn.execute("INSERT INTO run_progress (run_id, data) VALUES (0, '{}')"
                     " ON CONFLICT (run_id) DO UPDATE SET data = excluded.data")
        conn.execute("COMMIT")
        time.sleep(0.1)
    waits.put(found)


def one_round(sqlite_handler: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tickrun.db"
        SqliteStore(path).migrate()
        until = time.time() + ROUND_SECONDS
        waits: Any = mp.Queue()
        procs = [mp.Process(target=_runner, args=(path, i + 1, sqlite_handler, until))
                 for i in range(WRITERS)]
        procs.append(mp.Process(target=_stopper, args=(path, sqlite_handler, until, waits)))
        for p in procs:
            p.start()
        found = sorted(waits.get())
        for p in procs:
            p.join()
    return {"writes": len(found), "wait_p50_ms": round(percentile(found, 50) * 1000, 2),
            "wait_p99_ms": round(percentile(found, 99) * 1000, 1),
            "wait_max_ms": round(found[-1] * 1000, 1)}


def main(argv: list[str]) -> int:
    tickrun = one_round(sqlite_handler=False)
    print(f"tickrun's writers: {tickrun}", file=sys.stderr)
    before = one_round(sqlite_handler=True)
    print(f"SQLite's busy handler: {before}", file=sys.stderr)
    emit({"bench": "sqlite_writers", "runners": WRITERS, "step_seconds": STEP_SECONDS,
          "hold_seconds": HOLD_SECONDS,
          "round_seconds": ROUND_SECONDS, "tickrun": tickrun, "sqlite_busy_handler": before})
    return 0
