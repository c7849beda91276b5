"""Run duration and stop latency are observed once per run, when it leaves the active
set, whoever wrote its final status (the runner, usually, or the reconciler)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from controller.workload import WorkloadState
from core.status import RunStatus
from core.store import Store
from tests.factories import run_status
from tests.unit.controller.test_reconciler import ScriptedExecutor, queued, reconciler


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_stopped_run_is_observed_once_with_its_stop_latency(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    rec = reconciler(store, ex)
    run, finished = queued(store, 2)
    stops = count("tickrun_run_stop_seconds_count")
    stopped_runs = count("tickrun_run_duration_seconds_count", outcome="stopped")
    completed_runs = count("tickrun_run_duration_seconds_count", outcome="completed")
    rec.reconcile_once()  # both admitted
    for r in (run, finished):
        run_status(store).start_attempt(r.id)
        ex.states[r.id] = WorkloadState("running", pod_alive=True)
    rec.reconcile_once()
    run_status(store).transition(run.id, RunStatus.STOPPING, reason="stopped by the user")
    run_status(store).transition(run.id, RunStatus.STOPPED, reason="stopped: SIGTERM")  # the runner
    run_status(store).transition(finished.id, RunStatus.COMPLETED, result={})
    for _ in range(3):  # observed in the first pass that no longer sees them, only then
        rec.reconcile_once()
    assert count("tickrun_run_stop_seconds_count") == stops + 1
    assert count("tickrun_run_duration_seconds_count", outcome="stopped") == stopped_runs + 1
    assert count("tickrun_run_duration_seconds_count", outcome="completed") == \
        completed_runs + 1
