"""Fencing: exactly one runner plays a run, whatever starts a second one.

A runner thought lost (a cut-off node's pod, a runner whose server was killed) may
still run when its replacement starts. The replacement takes the run (attempts + 1);
every write of the old one is refused from then on, it notices within one step and
exits with EXIT_SUPERSEDED without finalizing. Each step is decided and traded once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest

from core.errors import Superseded
from core.eventlog import EventLog
from core.exitcodes import EXIT_SUPERSEDED
from core.records import Decision
from core.status import RunStatus
from core.store import Store
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
