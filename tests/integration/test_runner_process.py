"""A real `python -m runner` process: complete, SIGTERM, SIGKILL and resume, Redis down."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest

from core.eventlog import EventLog, EventType
from core.exitcodes import EXIT_NO_RETRY
from core.spec import RunSpec
from core.status import RunStatus
from core.store import Store
from tests.factories import daily_spec, intraday_spec, make_run, run_status
from tests.servers import free_port

pytestmark = pytest.mark.slow


def start_runner(run_id: int, env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", "--run-id", str(run_id)],
                            env={**env, **extra}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_step(event_log: EventLog, run_id: int, step: int, timeout: float = 60) -> None:
    """Follow the run's events (no sleeping) until a progress event reaches `step`."""
    last, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in event_log.read(run_id, last, block_ms=500):
            last = event.id
            if event.type is EventType.PROGRESS and event.data["step"] >= step:
                return
    raise TimeoutError(f"run {run_id} did not reach step {step}")


def assert_ledger_consistent(store: Store, run_id: int, initial: Decimal) -> None:
    trades = store.list_trades(run_id, limit=10**6)
    keys = Counter((t.step, t.seq) for t in trades)
    assert all(n == 1 for n in keys.values())
    cash = initial
    for t in trades:
        if t.filled:
            sign = -1 if t.side.buys else 1  # buys and covers pay
            cash += sign * t.quantity * t.price - t.fees
    assert store.get_portfolio(run_id).cash == cash


def assert_played_once(store: Store, run_ids: list[int]) -> None:
    """Each run completed, every step decided once, the ledger consistent."""
    for run_id in run_ids:
        run = store.get_run(run_id)
        assert run.status is RunStatus.COMPLETED and run.steps_done == run.steps_total, run
        decisions = store.list_decisions(run_id, limit=10**6)
        assert [d.step for d in decisions] == list(range(run.steps_total))
        assert all(d.completed for d in decisions)
        assert_ledger_consistent(store, run_id, run.spec.initial_cash)


def test_an_intraday_session_runs_to_completion(store: Store, event_log: EventLog,
                                                runner_env: dict[str, str]) -> None:
    run = make_run(store)
    proc = start_runner(run.id, runner_env)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.steps_done == 390
    decisions = store.list_decisions(run.id)
    assert [d.step for d in decisions] == list(range(390)) and all(d.completed for d in decisions)
    result = done.result or {}
    assert {"final_equity", "return_pct", "max_drawdown_pct", "sharpe", "trades", "win_rate",
            "benchmark"} <= set(result)
    assert result["trades"] > 0 and result["benchmark"]["return_pct"] is not None
    events = event_log.read(run.id, count=10_000)
    assert events[-1].type is EventType.RESULT and events[-1].data["status"] == "completed"
    assert sum(e.type is EventType.DECISION for e in events) == 390
    assert event_log.get_progress(run.id)["step"] == 390
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    summary = [line for line in lines if line["message"].startswith("run completed")]
    assert summary and summary[0]["run_id"] == run.id and summary[0]["user_id"] == run.user_id
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)


def test_a_daily_backtest_has_one_step_per_session(store: Store,
                                                   runner_env: dict[str, str]) -> None:
    run = make_run(store, daily_spec(dt.date(2024, 1, 2), dt.date(2024, 12, 31),
                                     decider="buy_and_hold"))
    proc = start_runner(run.id, runner_env)
    assert proc.wait(timeout=120) == 0
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.steps_done == 252
    trades = store.list_trades(run.id)
    assert len(trades) == 1 and trades[0].filled and trades[0].step == 0
    # Buy-and-hold *is* the benchmark: same return up to the 2% cash buffer.
    result = done.result or {}
    assert abs(result["return_pct"] - result["benchmark"]["return_pct"]) < 2 + 0.1 * abs(
        result["benchmark"]["return_pct"])


def test_sigterm_saves_partial_results_and_exits_zero(store: Store, event_log: EventLog,
                                                      runner_env: dict[str, str]) -> None:
    run = make_run(store)
    proc = start_runner(run.id, runner_env, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.02")
    wait_for_step(event_log, run.id, 30)
    # as the API does
    run_status(store).transition(run.id, RunStatus.STOPPING, reason="stop requested")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 0, stderr
    assert elapsed < 10  # the stop budget
    stopped = store.get_run(run.id)
    assert stopped.status is RunStatus.STOPPED and 30 <= stopped.steps_done < 390
    # SIGTERM, or the loop saw `stopping` first and kept the requester's reason.
    assert stopped.status_reason in ("stopped (SIGTERM)", "stop requested")
    result = stopped.result or {}
    assert result["ending"] == "stopped" and result["steps_done"] == stopped.steps_done
    assert len(store.list_decisions(run.id)) == stopped.steps_done
    final = event_log.read(run.id, count=10_000)[-1]
    assert final.type is EventType.RESULT and final.data["status"] == "stopped"
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)


def test_sigterm_without_a_stop_request_leaves_the_run_to_the_next_attempt(
        store: Store, event_log: EventLog, runner_env: dict[str, str]) -> None:
    """An eviction or a deleted pod: exit 1 (the Job retries), nothing finalized, and the
    next runner resumes after the checkpoint."""
    run = make_run(store)
    env = {**runner_env, "TICKRUN_RUNNER_STOP_INTENT_WAIT_SECONDS": "0.5"}
    proc = start_runner(run.id, env, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.02")
    wait_for_step(event_log, run.id, 20)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, stderr
    interrupted = store.get_run(run.id)
    assert interrupted.status is RunStatus.RUNNING and interrupted.steps_done >= 20
    again = start_runner(run.id, runner_env)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 2
    assert [d.step for d in store.list_decisions(run.id)] == list(range(390))
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)


def test_metrics_are_served_on_the_optional_port(store: Store, event_log: EventLog,
                                                runner_env: dict[str, str]) -> None:
    import httpx

    run = make_run(store)
    port = free_port()
    proc = start_runner(run.id, runner_env, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.02",
                        TICKRUN_RUNNER_METRICS_PORT=str(port))
    try:
        wait_for_step(event_log, run.id, 20)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'tickrun_runner_steps_total{mode="intraday"}' in text
        assert "tickrun_runner_decision_latency_seconds_bucket" in text
        assert "tickrun_runner_trades_total" in text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_sigkill_then_restart_resumes_without_deciding_or_trading_twice(
        store: Store, event_log: EventLog, runner_env: dict[str, str]) -> None:
    run = make_run(store, intraday_spec(decider_params={"fast": 2, "slow": 4}))
    proc = start_runner(run.id, runner_env, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.01")
    wait_for_step(event_log, run.id, 60)
    proc.kill()
    proc.wait(timeout=10)
    killed_at = store.get_run(run.id)
    assert killed_at.status is RunStatus.RUNNING and 60 <= killed_at.steps_done < 390
    again = start_runner(run.id, runner_env)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 2
    assert [d.step for d in store.list_decisions(run.id)] == list(range(390))
    assert "resuming after checkpoint" in stderr
    assert_ledger_consistent(store, run.id, run.spec.initial_cash)
    assert (done.result or {})["trades"] > 10


def test_redis_down_the_run_goes_on_and_trades_are_recorded(
        postgres_url: str, runner_env: dict[str, str]) -> None:
    from core.store import open_store

    store = open_store(postgres_url)
    try:
        run = make_run(store)
        env = {**runner_env, "TICKRUN_DATABASE_URL": postgres_url,
               "TICKRUN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        began = time.monotonic()
        proc = start_runner(run.id, env)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert time.monotonic() - began < 60
        done = store.get_run(run.id)
        assert done.status is RunStatus.COMPLETED and (done.result or {})["trades"] > 0
        assert "event log unavailable" in stderr
    finally:
        store.close()


def test_an_unplayable_run_fails_at_once_with_a_reason(store: Store,
                                                       runner_env: dict[str, str]) -> None:
    holiday = RunSpec.model_construct(**{**intraday_spec().model_dump(),
                                         "date": dt.date(2024, 12, 25)})
    run = make_run(store, intraday_spec())
    # A spec stored before a calendar update made its date a holiday: bypass validation.
    if store.__class__.__name__ == "SqliteStore":
        conn = store.connect()  # type: ignore[attr-defined]
        conn.execute("UPDATE runs SET spec = ? WHERE id = ?",
                     (holiday.model_dump_json(), run.id))
    else:
        with store._pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE runs SET spec = %s WHERE id = %s",
                         (holiday.model_dump_json(), run.id))
    proc = start_runner(run.id, runner_env)
    assert proc.wait(timeout=60) == EXIT_NO_RETRY
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.FAILED and "not a trading session" in str(
        failed.status_reason)
    assert store.list_decisions(run.id) == []
