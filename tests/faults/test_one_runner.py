"""Fencing: exactly one runner plays a run, whatever starts a second one.

A runner thought lost (a cut-off node's pod, a runner whose server was killed) may
still run when its replacement starts. The replacement takes the run (attempts + 1);
every write of the old one is refused from then on, it notices within one step and
exits with EXIT_SUPERSEDED without finalizing. Each step is decided and traded once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest

from core.errors import NotFound, Superseded
from core.eventlog import EventLog
from core.exitcodes import EXIT_SUPERSEDED
from core.records import Decision, OrderEvent, OrderEventKind
from core.status import RunStatus
from core.store import Store
from core.store.postgres import PostgresStore
from tests.factories import make_run, run_status
from tests.integration.test_runner_process import (
    assert_ledger_consistent,
    start_runner,
    wait_for_step,
)

pytestmark = pytest.mark.timeout(180)
BAR = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)


def test_a_superseded_attempt_can_write_nothing(store: Store) -> None:
    run = make_run(store)
    old = run_status(store).start_attempt(run.id).attempts
    new = run_status(store).start_attempt(run.id).attempts
    assert new == old + 1
    with pytest.raises(Superseded), store.ledger_tx(run.id, attempt=old):
        pass
    decision = Decision(run_id=run.id, step=0, bar_time=BAR, action="hold", orders=[],
                        reasoning="late", outcome="hold", latency_ms=0.0)
    with pytest.raises(Superseded):
        store.record_decision(decision, attempt=old)
    with pytest.raises(Superseded):
        store.complete_step(run.id, 0, equity=Decimal(1), cash=Decimal(1), attempt=old)
    with pytest.raises(Superseded):
        run_status(store).transition(run.id, RunStatus.COMPLETED, attempt=old)
    after = store.get_run(run.id)
    assert after.status is RunStatus.RUNNING and after.steps_done == 0
    assert store.get_decision(run.id, 0) is None
    # The owner's writes go through.
    store.record_decision(decision, attempt=new)
    with store.ledger_tx(run.id, attempt=new) as tx:
        assert tx.portfolio.cash == run.spec.initial_cash
    store.complete_step(run.id, 0, equity=Decimal(1), cash=Decimal(1), attempt=new)
    assert store.get_run(run.id).steps_done == 1


def _blocked_on_a_lock(store: Store) -> bool:
    """PostgreSQL: some session waits for a row lock (the old runner's write)."""
    with store._one_statement(write=False) as cur:  # type: ignore[attr-defined]
        row = cur.one("SELECT count(*) AS n FROM pg_stat_activity"
                      " WHERE wait_event_type = 'Lock' AND datname = current_database()")
    return bool(row and row["n"])


def _write_racing_a_new_attempt(store: Store, run_id: int,
                                 write: Callable[[], object]) -> BaseException | None:
    """Run the old attempt's `write` while a newer runner's start (attempts + 1) is
    not yet committed, then commit the start: what the write raised, if anything. On
    PostgreSQL the write waits for the start's lock (the folded check must read the
    run's row as the start left it); SQLite's write waits for the database itself."""
    raised: list[BaseException] = []

    def old_runner() -> None:
        try:
            write()
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=old_runner)
    with store._tx(write=True) as cur:  # type: ignore[attr-defined]
        cur.run("UPDATE runs SET attempts = attempts + 1 WHERE id = %s", (run_id,))
        thread.start()
        if isinstance(store, PostgresStore):
            deadline = time.monotonic() + 30
            while not _blocked_on_a_lock(store):
                assert time.monotonic() < deadline, "the old write never waited"
                time.sleep(0.01)
    thread.join(60)
    assert not thread.is_alive()
    return raised[0] if raised else None


@pytest.mark.parametrize("write", ["decision", "checkpoint", "ledger"])
def test_a_write_racing_a_new_attempt_is_refused_by_its_own_check(
        store: Store, write: str) -> None:
    run = make_run(store)
    old = run_status(store).start_attempt(run.id).attempts
    decision = Decision(run_id=run.id, step=0, bar_time=BAR, action="hold", orders=[],
                        reasoning="late", outcome="hold", latency_ms=0.0, completed=True,
                        equity=Decimal(1), cash=Decimal(1))
    if write == "checkpoint":  # the step's decision is there: only its checkpoint is left
        store.record_decision(dataclasses.replace(decision, completed=False), attempt=old)

    def ledger() -> None:
        with store.ledger_tx(run.id, attempt=old) as tx:
            tx.save_portfolio(dataclasses.replace(tx.portfolio, cash=Decimal(0)))

    writes: dict[str, Callable[[], object]] = {
        "decision": lambda: store.record_decision(decision, attempt=old),
        "checkpoint": lambda: store.complete_step(run.id, 0, equity=Decimal(1),
                                                  cash=Decimal(1), attempt=old),
        "ledger": ledger,
    }
    assert isinstance(_write_racing_a_new_attempt(store, run.id, writes[write]), Superseded)
    after = store.get_run(run.id)
    assert after.attempts == old + 1 and after.steps_done == 0
    recorded = store.get_decision(run.id, 0)
    if write == "checkpoint":
        assert recorded is not None and not recorded.completed
    else:
        assert recorded is None
    assert store.get_portfolio(run.id).cash == run.spec.initial_cash


def test_a_replayed_decision_is_the_first_and_moves_no_checkpoint(store: Store) -> None:
    run = make_run(store)
    attempt = run_status(store).start_attempt(run.id).attempts
    first = store.record_decision(Decision(
        run_id=run.id, step=0, bar_time=BAR, action="buy", orders=[], reasoning="first",
        outcome="trade", latency_ms=0.0), attempt=attempt)
    again = store.record_decision(Decision(
        run_id=run.id, step=0, bar_time=BAR, action="hold", orders=[], reasoning="again",
        outcome="hold", latency_ms=0.0, completed=True, equity=Decimal(1),
        cash=Decimal(1)), attempt=attempt)
    assert again.reasoning == first.reasoning == "first" and not again.completed
    assert store.get_run(run.id).steps_done == 0
    with pytest.raises(NotFound):
        store.record_decision(dataclasses.replace(first, run_id=10**9), attempt=attempt)


def test_a_ledger_write_that_fails_at_commit_leaves_nothing(store: Store) -> None:
    """A batch's writes go out with its commit (PostgreSQL): one that fails there
    fails the whole transaction, the writes before it included."""
    run = make_run(store)
    attempt = run_status(store).start_attempt(run.id).attempts
    with pytest.raises((psycopg.errors.ForeignKeyViolation, sqlite3.IntegrityError)), \
            store.ledger_tx(run.id, attempt=attempt) as tx:
        tx.save_portfolio(dataclasses.replace(tx.portfolio, cash=Decimal(0)))
        tx.add_order_events([OrderEvent(10**9, 0, OrderEventKind.PLACED, BAR)])
    assert store.get_portfolio(run.id).cash == run.spec.initial_cash
    with store.ledger_tx(run.id, attempt=attempt) as tx:  # the connection is usable
        tx.save_portfolio(dataclasses.replace(tx.portfolio, cash=Decimal(5)))
    assert store.get_portfolio(run.id).cash == Decimal(5)


def test_a_second_runner_supersedes_the_first_and_every_step_is_played_once(
        store: Store, event_log: EventLog, runner_env: dict[str, str]) -> None:
    run = make_run(store)
    slow = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.05"}
    first = start_runner(run.id, runner_env, **slow)
    try:
        wait_for_step(event_log, run.id, 30)
        second = start_runner(run.id, runner_env, **slow)
        _, first_err = first.communicate(timeout=60)
        assert first.returncode == EXIT_SUPERSEDED, first_err[-2000:]
        assert "superseded" in first_err
        _, second_err = second.communicate(timeout=120)
        assert second.returncode == 0, second_err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 2
    decisions = store.list_decisions(run.id, limit=1000)
    assert [d.step for d in decisions] == list(range(390)) and all(d.completed for d in decisions)
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)
    steps = Counter(t.step for t in store.list_trades(run.id, limit=10**6))
    assert steps and max(steps.values()) == 1, "one trade per step at most (SMA baseline)"
