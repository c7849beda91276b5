"""A change to one run is handled by a pass over that run: the controller's cost
follows what changed, not the runs it holds; the loop takes ids from the work queue."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from controller.workload import WorkloadState
from core.status import RunStatus
from core.store import Store
from tests.unit.controller.test_reconciler import (
    ScriptedExecutor,
    queued,
    reconciler,
)


class CountingExecutor(ScriptedExecutor):
    def __init__(self) -> None:
        super().__init__(gone_means_stopped=True)
        self.observed: list[set[int]] = []

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        ids = set(run_ids)
        self.observed.append(ids)
        return super().observe(ids)


def test_a_change_to_one_run_looks_at_that_run_only(store: Store) -> None:
    ex = CountingExecutor()
    runs = queued(store, 10)
    rec = reconciler(store, ex, per_user=10)  # the global limit is 10
    rec.reconcile_once()  # all admitted, their workloads pending
    assert {store.get_run(r.id).status for r in runs} == {RunStatus.ADMITTED}
    ex.observed.clear()
    ex.states[runs[7].id] = WorkloadState("failed", "OOMKilled", 137)
    rec.reconcile_changed([runs[7].id])
    assert ex.observed == [{runs[7].id}]  # no queued run: admission looked at none
    assert store.get_run(runs[7].id).status is RunStatus.FAILED
    assert store.get_run(runs[8].id).status is RunStatus.ADMITTED


def test_the_loop_handles_a_queued_change_without_waiting_for_the_resync(
        store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    rec = reconciler(store, ex)
    stop = threading.Event()
    loop = threading.Thread(target=rec.run_forever, args=(stop,),
                            kwargs={"interval": 300.0}, daemon=True)
    loop.start()
    try:
        deadline = threading.Event()
        for _ in range(100):  # the first (full) pass admits it and starts its workload
            # Not the store's status alone: the pass unsuspends the workload after it,
            # which would overwrite the state set below (a loaded machine saw it).
            if (state := ex.states.get(run.id)) is not None and state.phase == "pending":
                break
            deadline.wait(0.05)
        assert store.get_run(run.id).status is RunStatus.ADMITTED
        ex.states[run.id] = WorkloadState("succeeded", exit_code=0)
        ex.changes.add(run.id)  # what the informer does on a watch event
        for _ in range(100):
            if store.get_run(run.id).status.is_terminal:
                break
            deadline.wait(0.05)
        assert store.get_run(run.id).status is RunStatus.FAILED
    finally:
        stop.set()
        loop.join(5)
