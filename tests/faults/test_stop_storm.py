"""A storm of stops: 20 live runs stopped at random (seeded) moments over HTTP.

Every run ends final: `stopped` with partial results, or `completed` when it really
finished before its stop arrived (counted apart; most must be stopped). Every step the
run did is decided exactly once, the ledger is consistent with unique (step, seq), and no
trade comes after the stop except the step that was in flight when it was answered.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from core.store import open_store
from tests.apiserver import Backend, running_api, wait_for
from tests.integration.test_api_runs import create, create_model, intraday
from tests.integration.test_runner_process import assert_ledger_consistent

pytestmark = pytest.mark.timeout(180)
RUNS = 20
USERS = 4
STEP_DELAY = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.04"}  # 390 steps: ~16 s alone


def test_a_storm_of_stops_leaves_every_run_final_and_its_ledger_whole(
        backend: Backend) -> None:
    rng = random.Random(20261125)
    with running_api(backend, per_user=RUNS, global_=RUNS, runner_env=STEP_DELAY) as api:
        clients = [api.client(f"storm-{u}") for u in range(USERS)]
        try:
            models = [create_model(c) for c in clients]
            runs: list[tuple[int, int]] = []  # (run id, user index)
            for i in range(RUNS):
                u = i % USERS
                runs.append((create(clients[u], intraday(models[u]))["id"], u))

            def running(run_id: int, u: int) -> bool:
                run = clients[u].get(f"/v1/runs/{run_id}").json()
                return bool(run["status"] == "running" and run["progress"]["step"] > 0)
            wait_for(lambda: all(running(r, u) for r, u in runs), timeout=60, interval=0.3)

            # Stop each run at its own random moment within the next ~12 s.
            start = time.monotonic()
            plan = sorted((rng.uniform(0.0, 12.0), r, u) for r, u in runs)
            at_stop: dict[int, dict[str, Any]] = {}
            for offset, run_id, u in plan:
                time.sleep(max(0.0, start + offset - time.monotonic()))
                r = clients[u].post(f"/v1/runs/{run_id}/stop")
                assert r.status_code == 202, r.text
                at_stop[run_id] = r.json()

            def final(run_id: int, u: int) -> dict[str, Any] | None:
                run: dict[str, Any] = clients[u].get(f"/v1/runs/{run_id}").json()
                return run if run["status"] in ("stopped", "completed", "failed") else None
            finals = {r: wait_for(lambda r=r, u=u: final(r, u), timeout=60, interval=0.3)
                      for r, u in runs}
        finally:
            for c in clients:
                c.close()

    store = open_store(backend.database_url, pool_size=2)
    try:
        stopped = completed = trades_total = steps_total = 0
        for run_id, _ in runs:
            run = finals[run_id]
            answered = at_stop[run_id]
            assert run["status"] in ("stopped", "completed"), (run_id, run["status_reason"])
            record = store.get_run(run_id)
            result = run["result"]
            assert result is not None, f"run {run_id} ended without a result"
            done = record.steps_done
            assert result["steps_done"] == done == run["progress"]["step"]
            if run["status"] == "completed" and answered["status"] == "completed":
                completed += 1
                assert done == record.steps_total
            else:
                assert run["status"] == "stopped", f"run {run_id} ignored its stop: {run}"
                stopped += 1
                assert done < record.steps_total
            decisions = store.list_decisions(run_id, limit=10_000)
            assert [d.step for d in decisions] == list(range(done)), f"run {run_id}"
            assert_ledger_consistent(store, run_id, record.spec.initial_cash)
            trades = store.list_trades(run_id, limit=10**6)
            assert len(trades) == result["trades"] + result["refused"]
            if answered["status"] != "completed":
                limit = answered["progress"]["step"] + 1  # the step in flight may finish
                late = [t.step for t in trades if t.step > limit]
                assert late == [], f"run {run_id}: trades after its stop at {limit}: {late}"
            trades_total += len(trades)
            steps_total += done
        print(f"stop storm: {stopped} stopped, {completed} completed, {steps_total} steps, "
              f"{trades_total} trades")
        assert stopped + completed == RUNS and stopped >= RUNS * 3 // 4
        assert trades_total > 0
    finally:
        store.close()
