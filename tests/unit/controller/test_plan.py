"""plan(run, observed): each run status against each thing its workload can be."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.plan import (
    Action,
    DeleteWorkload,
    Finalize,
    MarkStopping,
    Policy,
    RequeueAfter,
    Resume,
    Submit,
    Unsuspend,
    plan,
)
from controller.workload import GONE, WorkloadState
from core.records import Run
from core.status import RunStatus
from tests.factories import daily_spec

NOW = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.UTC)
KUBERNETES = Policy(gone_means_stopped=True, lost_grace=dt.timedelta(seconds=30),
                    stop_delete_retry=dt.timedelta(seconds=5))
LOCAL = Policy(gone_means_stopped=False, lost_grace=dt.timedelta(seconds=30),
               stop_delete_retry=dt.timedelta(seconds=5))


def a_run(status: RunStatus, *, reason: str | None = None, age_s: float = 60,
          stop_age_s: float | None = None) -> Run:
    created = NOW - dt.timedelta(seconds=age_s)
    spec = daily_spec()
    return Run(id=7, user_id="u", model_id=1, spec=spec, status=status,
               status_reason=reason, steps_total=spec.step_count(), steps_done=0,
               created_at=created, admitted_at=None,
               started_at=created if status is RunStatus.RUNNING else None,
               finished_at=None, result=None,
               stop_requested_at=(None if stop_age_s is None
                                  else NOW - dt.timedelta(seconds=stop_age_s)))


def plan_for(run: Run, observed: WorkloadState, policy: Policy = KUBERNETES) -> list[Action]:
    return plan(run, observed, now=NOW, policy=policy)


@pytest.mark.parametrize(("observed", "actions"), [
    (GONE, [Submit()]),
    (WorkloadState("suspended"), []),  # admission decides, across runs
    (WorkloadState("pending"), []),
])
def test_a_queued_run_gets_a_workload_and_waits_for_admission(
        observed: WorkloadState, actions: list[Action]) -> None:
    assert plan_for(a_run(RunStatus.QUEUED), observed) == actions


def test_a_queued_run_refused_before_clears_its_reason_when_its_workload_is_made() -> None:
    run = a_run(RunStatus.QUEUED, reason="waiting: workload refused: exceeded quota")
    assert plan_for(run, GONE) == [Submit(clear_reason=True)]


@pytest.mark.parametrize(("observed", "actions"), [
    (WorkloadState("suspended"), [Unsuspend()]),
    (WorkloadState("pending"), []),
    (WorkloadState("running", pod_alive=True), []),
    (WorkloadState("running", "deleted", pod_alive=True, deleting=True),
     [MarkStopping("deleted")]),
    (WorkloadState("gone", pod_alive=True), [MarkStopping("workload deleted")]),
    (WorkloadState("gone", "Job deleted"), [Finalize(RunStatus.STOPPED, "stopped: Job deleted")]),
    (WorkloadState("failed", "OOMKilled", 137),
     [Finalize(RunStatus.FAILED, "OOMKilled")]),
    (WorkloadState("failed", "ImagePullBackOff", pod_alive=True),
     [Finalize(RunStatus.FAILED, "ImagePullBackOff"), DeleteWorkload("its pod is stuck")]),
    (WorkloadState("succeeded", exit_code=0),
     [Finalize(RunStatus.FAILED, "the runner exited without saving a result")]),
])
def test_an_admitted_or_running_run_follows_its_workload(
        observed: WorkloadState, actions: list[Action]) -> None:
    for status in (RunStatus.ADMITTED, RunStatus.RUNNING):
        assert plan_for(a_run(status), observed) == actions


def test_a_lost_local_runner_is_resumed_after_its_grace_and_not_before() -> None:
    assert plan_for(a_run(RunStatus.RUNNING, age_s=60), GONE, LOCAL) == [Resume()]
    assert plan_for(a_run(RunStatus.RUNNING, age_s=10), GONE, LOCAL) == [RequeueAfter(20.0)]


def test_a_stop_waits_for_the_apis_delete_then_deletes_once_more() -> None:
    alive = WorkloadState("running", pod_alive=True)
    assert plan_for(a_run(RunStatus.STOPPING, stop_age_s=2), alive) == [RequeueAfter(3.0)]
    assert plan_for(a_run(RunStatus.STOPPING, stop_age_s=6), alive) == [
        DeleteWorkload("stopping for 6s with its workload alive")]
    # Another process's clock ahead of this one: deleted now, not waited on.
    assert isinstance(plan_for(a_run(RunStatus.STOPPING, stop_age_s=-9), alive)[0],
                      DeleteWorkload)
    deleting = WorkloadState("running", pod_alive=True, deleting=True)
    assert plan_for(a_run(RunStatus.STOPPING, stop_age_s=60), deleting) == []


def test_a_stopping_run_whose_runner_died_first_is_finalized_stopped() -> None:
    run = a_run(RunStatus.STOPPING, reason="stop requested", stop_age_s=60)
    assert plan_for(run, WorkloadState("gone", pod_alive=True)) == []  # still saving
    assert plan_for(run, GONE) == [Finalize(RunStatus.STOPPED, "stop requested")]


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED])
def test_a_final_run_needs_nothing(status: RunStatus) -> None:
    assert plan_for(a_run(status), WorkloadState("running", pod_alive=True)) == []
