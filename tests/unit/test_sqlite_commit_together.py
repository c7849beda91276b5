"""A step on SQLite commits once: its decision (with its checkpoint) and its events are
one write transaction (Store.commit_together), all or nothing, whichever store of the
file the event log writes through. An inner transaction
whose error is caught inside leaves nothing of its own; events of a transaction that
rolled back are sent again by the publisher, not lost."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from core.eventlog import EventType
from core.eventlog.sqlite_log import SqliteEventLog
from core.records import Decision, Run
from core.store.sqlite import SqliteStore
from runner.events import EventPublisher
from tests.factories import make_run

BAR = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


def hold(run: Run, step: int) -> Decision:
    return Decision(run_id=run.id, step=step, bar_time=BAR, action="hold", orders=[],
                    reasoning="nothing to do", outcome="hold", latency_ms=0.1,
                    equity=run.spec.initial_cash, cash=run.spec.initial_cash, completed=True)


def seen(store: SqliteStore, run: Run) -> tuple[int, int, int]:
    """(decisions, events, steps_done) as another connection sees them."""
    other = sqlite3.connect(store.path)
    try:
        return (other.execute("SELECT COUNT(*) FROM decisions WHERE run_id = ?",
                              (run.id,)).fetchone()[0],
                other.execute("SELECT COUNT(*) FROM events WHERE run_id = ?",
                              (run.id,)).fetchone()[0],
                other.execute("SELECT steps_done FROM runs WHERE id = ?",
                              (run.id,)).fetchone()[0])
    finally:
        other.close()


def test_a_steps_decision_and_events_are_one_transaction(store: SqliteStore) -> None:
    # The event log opened on its own store of the file (open_event_log's): on this
    # thread it shares the store's connection, so it joins instead of waiting for the
    # lock the step's transaction holds.
    run, log = make_run(store), SqliteEventLog(SqliteStore(store.path))
    statements: list[str] = []
    store.connect().set_trace_callback(statements.append)
    with store.commit_together():
        recorded = store.record_decision(hold(run, 0))
        answer = log.send_batch(run.id, [(EventType.DECISION, {"step": 0})], {"step": 1})
        assert seen(store, run) == (0, 0, 0)  # nothing visible before the commit
    step = list(statements)
    answer()  # committed: nothing to raise
    assert seen(store, run) == (1, 1, 1)
    assert store.get_decision(run.id, 0) == recorded
    assert log.get_progress(run.id) == {"step": 1}
    assert step.count("BEGIN IMMEDIATE") == 1 and step.count("COMMIT") == 1


def test_an_error_inside_leaves_nothing_and_the_events_are_sent_again(
        store: SqliteStore) -> None:
    run, log = make_run(store), SqliteEventLog(store)
    publisher = EventPublisher(log, run.id, retry_after_seconds=0.0)
    with pytest.raises(RuntimeError), store.commit_together():
        store.record_decision(hold(run, 0))
        publisher.publish_step([(EventType.DECISION, {"step": 0})], {"step": 1})
        raise RuntimeError("the step failed after publishing")
    assert seen(store, run) == (0, 0, 0)
    assert not publisher.flush()  # the answer: that transaction rolled back
    assert publisher.flush()  # after the pause: sent again, once
    assert [e.data for e in log.read(run.id)] == [{"step": 0}]
    assert log.get_progress(run.id) == {"step": 1}


def test_an_inner_transaction_whose_error_is_caught_leaves_nothing_of_its_own(
        store: SqliteStore) -> None:
    run = make_run(store)
    with store.commit_together():
        store.record_decision(hold(run, 0))
        with pytest.raises(ValueError), store._tx(write=True) as cur:
            cur.run("INSERT INTO run_progress (run_id, data) VALUES (%s, '{}')", (run.id,))
            raise ValueError("refused half way")
    assert seen(store, run) == (1, 0, 1)
    with store._tx() as cur:
        assert cur.one("SELECT * FROM run_progress WHERE run_id = %s", (run.id,)) is None


def test_a_superseded_runners_decision_is_refused_inside_too(store: SqliteStore) -> None:
    from core.errors import Superseded

    run = make_run(store)
    with pytest.raises(Superseded), store.commit_together():
        store.record_decision(hold(run, 0), attempt=run.attempts + 1)
    assert seen(store, run) == (0, 0, 0)


def test_a_failed_event_batch_leaves_the_decision_and_is_sent_again(
        store: SqliteStore) -> None:
    run, log = make_run(store), SqliteEventLog(store)
    publisher = EventPublisher(log, run.id, retry_after_seconds=0.0)
    # The batch's second event fails: its first must not stay (nor come twice later).
    refuse = ("CREATE TEMP TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'progress'"
              " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    store.connect().execute(refuse)
    with store.commit_together():
        store.record_decision(hold(run, 0))
        publisher.publish_step([(EventType.DECISION, {"step": 0}),
                                (EventType.PROGRESS, {"step": 1})], {"step": 1})
    assert seen(store, run) == (1, 0, 1)  # the step's record stands without its events
    assert log.get_progress(run.id) == {}  # nothing of the failed batch stayed
    store.connect().execute("DROP TRIGGER refuse")
    assert publisher.flush()
    assert [e.data for e in log.read(run.id)] == [{"step": 0}, {"step": 1}]
    assert log.get_progress(run.id) == {"step": 1}


def test_stores_of_one_file_share_a_connection_however_its_path_is_spelled(
        store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.db").symlink_to(tmp_path / "t.db")
    for other in (SqliteStore("t.db", busy_timeout_ms=5_000), SqliteStore("link.db")):
        assert other._connection() is store._connection()
    # Each store's statements wait on its own busy timeout.
    assert SqliteStore("t.db", busy_timeout_ms=5_000).connect().execute(
        "PRAGMA busy_timeout").fetchone()[0] == 5_000
    assert store.connect().execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
