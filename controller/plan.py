"""What one run needs, from its status and what its workload is now: a pure function.

`plan(run, observed, ...)` returns the actions that bring the workload and the status
together; the reconciler carries them out (controller/reconciler.py). Nothing here
reads a clock, a store or an API: every case is a unit test (tests/unit/controller).
Admission is not here: it is decided across runs (core/admission.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from controller.workload import WorkloadState
from core.records import Run
from core.status import RunStatus


@dataclass(frozen=True, slots=True)
class Submit:
    """Create the workload, suspended; a reason left by a refusal is cleared."""

    clear_reason: bool = False


@dataclass(frozen=True, slots=True)
class Unsuspend:
    """Let an admitted run's suspended workload start."""


@dataclass(frozen=True, slots=True)
class DeleteWorkload:
    """Delete it: a stop whose delete did not happen, or a stuck pod holding a node."""

    why: str


@dataclass(frozen=True, slots=True)
class MarkStopping:
    why: str


@dataclass(frozen=True, slots=True)
class Finalize:
    """For a runner that could not: the status, with a result from the ledger."""

    status: RunStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Resume:
    """The local runner was lost: a new one resumes the run from its checkpoint, as a
    Job's next pod would (unless the store says it ended meanwhile)."""


@dataclass(frozen=True, slots=True)
class RequeueAfter:
    seconds: float


Action = Submit | Unsuspend | DeleteWorkload | MarkStopping | Finalize | Resume | RequeueAfter


@dataclass(frozen=True, slots=True)
class Policy:
    gone_means_stopped: bool  # the executor's: `kubectl delete job` is a stop
    lost_grace: dt.timedelta  # a local run without a runner this long is resumed
    stop_delete_retry: dt.timedelta  # a stop's delete not seen this long is done again


def plan(run: Run, observed: WorkloadState, *, now: dt.datetime,
         policy: Policy) -> list[Action]:
    if run.status.is_terminal:
        return []
    if run.status is RunStatus.QUEUED:
        return _queued(run, observed)
    if run.status is RunStatus.STOPPING:
        return _stopping(run, observed, now, policy)
    return _admitted_or_running(run, observed, now, policy)


def _queued(run: Run, observed: WorkloadState) -> list[Action]:
    if observed.phase == "gone":
        return [Submit(clear_reason=bool(run.status_reason))]
    return []  # admission (across runs) decides the rest


def _stopping(run: Run, observed: WorkloadState, now: dt.datetime,
              policy: Policy) -> list[Action]:
    if observed.phase in ("suspended", "pending", "running"):
        if observed.deleting:  # already on its way out; asking again only adds noise
            return []
        age = now - (run.stop_requested_at or run.created_at)
        # A negative age is another process's clock: not waited on.
        if dt.timedelta(0) <= age < policy.stop_delete_retry:  # the API's delete is under way
            return [RequeueAfter((policy.stop_delete_retry - age).total_seconds())]
        return [DeleteWorkload(f"stopping for {age.total_seconds():.0f}s with its workload "
                               "alive")]
    if observed.pod_alive:
        return []  # the runner is saving its results; its exit is the next change
    # The runner saves `stopped` itself; this is for one that died first.
    return [Finalize(RunStatus.STOPPED,
                     run.status_reason or "stopped; the runner exited without saving")]


def _admitted_or_running(run: Run, observed: WorkloadState, now: dt.datetime,
                         policy: Policy) -> list[Action]:
    if observed.deleting or (observed.phase == "gone" and observed.pod_alive):
        return [MarkStopping(observed.reason or "workload deleted")]
    if observed.phase == "suspended":
        return [Unsuspend()]
    if observed.phase == "failed":
        failed: list[Action] = [Finalize(RunStatus.FAILED,
                                         observed.reason or "the runner failed")]
        if observed.pod_alive:  # stuck (ImagePullBackOff, Unschedulable): free the node
            failed.append(DeleteWorkload("its pod is stuck"))
        return failed
    if observed.phase == "succeeded":
        return [Finalize(RunStatus.FAILED, "the runner exited without saving a result")]
    if observed.phase == "gone":
        return _gone(run, observed, now, policy)
    return []


def _gone(run: Run, observed: WorkloadState, now: dt.datetime,
          policy: Policy) -> list[Action]:
    if policy.gone_means_stopped:
        return [Finalize(RunStatus.STOPPED, f"stopped: {observed.reason or 'Job deleted'}")]
    since = run.started_at or run.admitted_at or run.created_at
    waited = now - since
    if waited < policy.lost_grace:  # a runner on its way may not have written yet
        return [RequeueAfter((policy.lost_grace - waited).total_seconds())]
    return [Resume()]
