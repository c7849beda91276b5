"""The reconciler: admits queued runs and keeps every run's status true.

It serves both executors. Each pass reads the active runs from the store and what the
executor says of their workloads, then does what the difference asks for; every action
is idempotent, so a pass repeated after a crash or beside the API changes nothing twice.
Admission is decided inside one store transaction, so no run is ever admitted twice.

Each run is reconciled on its own: an error on one run (a refused Job, a timeout) is
retried for that run with backoff while the pass goes on with the others. A run waits
for admission until its workload exists, so a quota that refuses Jobs keeps the run
queued with the quota's message as its reason, never admitted without a workload.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from controller import telemetry
from controller.executor import Executor, WorkloadMissing, WorkloadRefused
from controller.scheduler import NotifySchedule, Scheduler
from controller.workload import WorkloadState
from core.errors import NotFound
from core.eventlog import EventLog
from core.lifecycle import Lifecycle
from core.logs import run_context
from core.records import Run
from core.spend import DailyLimit, utc_day
from core.status import RunStatus
from core.store import Store

log = logging.getLogger(__name__)

ACTIVE_OR_QUEUED = (RunStatus.QUEUED, RunStatus.ADMITTED, RunStatus.RUNNING, RunStatus.STOPPING)

# Workloads unsuspended at once when a pass admits many runs.
ADMIT_CONCURRENCY = 8

# A stop deletes its workload once, from the API (Lifecycle.request_stop). A pass that
# meets a `stopping` run whose workload is alive and not being deleted deletes it only
# when the stop is older than this: the API's delete failed (its watch event is due
# within milliseconds otherwise); the pass comes back then.
STOP_DELETE_RETRY = dt.timedelta(seconds=5)

# (run, reason) -> None: the Kubernetes controller turns these into Events on the Job.
Notify = Callable[[Run, str, str], None]


@dataclass(frozen=True, slots=True)
class Limits:
    per_user: int = 2
    global_: int = 20
    # Each user's LLM spend per UTC day (an operator's per-user limit wins); None: none.
    daily_spend_usd: Decimal | None = None


class Reconciler:
    def __init__(self, store: Store, events: EventLog, executor: Executor, limits: Limits,
                 *, lost_grace_seconds: float = 30.0, notify: Notify | None = None,
                 notify_schedule: NotifySchedule | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store = store
        self.events = events
        self.executor = executor
        self.lifecycle = Lifecycle(store, events, executor)
        self.limits = limits
        self.lost_grace = dt.timedelta(seconds=lost_grace_seconds)
        self.notify: Notify = notify or (lambda run, reason, message: None)
        self.clock = clock  # now: for the daily spend limits and the schedules' due times
        self.scheduler = Scheduler(store, executor, clock=clock, notify=notify_schedule,
                                   events=events)
        self.wake = threading.Event()
        self._active: set[int] = set()  # runs active or queued in the last pass
        # Runs found final whose workloads stay until their TTL: not asked about again
        # every pass (5,000 finished Jobs would be a 5,000-id query per watch event).
        self._finished: set[int] = set()
        self._backoff = RunBackoff()
        self._requeue_at: float | None = None  # monotonic: a pass no later than this
        self._requeue_lock = threading.Lock()  # admissions run on several threads

    # -- one pass ----------------------------------------------------------------------
    def reconcile_once(self) -> None:
        started = time.perf_counter()
        try:
            self._fire_schedules()
            runs = self.store.runs_with_status(ACTIVE_OR_QUEUED)
            self._observe_ended({r.id for r in runs})
            states = self.executor.observe(r.id for r in runs)
            for run in runs:
                with run_context(run.id, run.user_id):  # its log lines carry the ids
                    self._reconcile_guarded(run, states[run.id])
            self._admit(self._not_ready(runs, states))
            self._delete_orphans({r.id for r in runs})
            self._export_counts()
        except Exception:
            telemetry.RECONCILE_ERRORS.inc()
            raise
        finally:
            telemetry.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _fire_schedules(self) -> None:
        """Due schedules make their runs first, so this pass admits them."""
        try:
            self.scheduler.fire_due()
        except Exception as exc:  # the runs already there are reconciled regardless
            log.warning("schedules not fired this pass (%s); the next pass retries", exc)

    def _reconcile_guarded(self, run: Run, state: WorkloadState) -> None:
        """One run's reconciliation; its errors are its own."""
        if self._backoff.waiting(run.id):
            return
        try:
            self._reconcile_run(run, state)
        except WorkloadRefused as exc:
            self._refused(run, exc)
        except Exception as exc:  # a 429, a 5xx, a timeout, a conflict: try again later
            delay = self._backoff.failed(run.id)
            self._requeue_after(delay)  # retried then, not at the next event or resync
            telemetry.RUN_ERRORS.labels("temporary").inc()
            log.warning("run %d: reconcile failed (%s: %s); retrying in %.1fs", run.id,
                        type(exc).__name__, exc, delay)
        else:
            self._backoff.succeeded(run.id)

    def _refused(self, run: Run, exc: WorkloadRefused) -> None:
        if exc.permanent:
            telemetry.RUN_ERRORS.labels("invalid").inc()
            self._finalize(run, RunStatus.FAILED, f"workload refused: {exc}")
            return
        delay = self._backoff.failed(run.id)
        self._requeue_after(delay)
        telemetry.RUN_ERRORS.labels("refused").inc()
        reason = f"waiting: workload refused: {exc}"
        if run.status_reason != reason:
            self.lifecycle.note(run.id, RunStatus.QUEUED, reason)
            self.notify(run, "WorkloadRefused", str(exc))
        log.warning("run %d: workload refused (%s); queued, retrying in %.1fs", run.id, exc,
                    delay)

    def _not_ready(self, runs: list[Run], states: dict[int, WorkloadState]) -> set[int]:
        """Queued runs without a workload (refused, or in backoff): not admissible yet."""
        fresh = self.executor.observe(r.id for r in runs if r.status is RunStatus.QUEUED)
        return {run_id for run_id, state in fresh.items()
                if state.phase == "gone" or self._backoff.waiting(run_id)}

    def _reconcile_run(self, run: Run, state: WorkloadState) -> None:
        if run.status is RunStatus.QUEUED:
            if state.phase == "gone":
                self.executor.submit(run)
                if run.status_reason:
                    self.lifecycle.note(run.id, RunStatus.QUEUED, None)  # the quota freed
            return
        if run.status is RunStatus.STOPPING:
            self._reconcile_stopping(run, state)
            return
        # admitted or running
        if state.deleting or (state.phase == "gone" and state.pod_alive):
            self._mark_stopping(run, state.reason or "workload deleted")
        elif state.phase == "suspended":
            self.executor.admit(run.id)
        elif state.phase == "failed":
            self._finalize(run, RunStatus.FAILED, state.reason or "the runner failed")
            if state.pod_alive:  # stuck (ImagePullBackOff, Unschedulable): free the node
                self.executor.stop(run.id)
        elif state.phase == "succeeded":
            self._finalize(run, RunStatus.FAILED, "the runner exited without saving a result")
        elif state.phase == "gone":
            self._reconcile_gone(run, state)

    def _reconcile_stopping(self, run: Run, state: WorkloadState) -> None:
        if state.phase in ("suspended", "pending", "running"):
            if state.deleting:  # already on its way out; asking again only adds noise
                return
            age = self.clock() - (run.stop_requested_at or run.created_at)
            # (a negative age is another process's clock: not waited on)
            if dt.timedelta(0) <= age < STOP_DELETE_RETRY:  # the API's delete is under way
                self._requeue_after((STOP_DELETE_RETRY - age).total_seconds())
                return
            log.warning("run %d: stopping for %.0fs with its workload alive; deleting it",
                        run.id, age.total_seconds())
            self.executor.stop(run.id)
        elif not state.pod_alive:
            # The runner saves `stopped` itself; this is for one that died first.
            reason = run.status_reason or "stopped; the runner exited without saving"
            self._finalize(run, RunStatus.STOPPED, reason)

    def _mark_stopping(self, run: Run, why: str) -> None:
        if self.lifecycle.mark_stopping(run, why):
            self.notify(run, "StopRequested", f"stopping: {why}")

    def _reconcile_gone(self, run: Run, state: WorkloadState) -> None:
        if self.executor.gone_means_stopped:
            self._finalize(run, RunStatus.STOPPED, f"stopped: {state.reason or 'Job deleted'}")
            return
        since = run.started_at or run.admitted_at or run.created_at
        if dt.datetime.now(dt.UTC) - since < self.lost_grace:
            return
        # The pass read the run before it looked for the runner: a runner that finalized
        # the run and exited in between is not lost. Ask the store again, now.
        if self.store.get_run(run.id).status.is_terminal:
            return
        # The local runner was lost (the server restarted): a new one resumes the run
        # from its checkpoint, as a Job's replacement pod would.
        log.warning("run %d has no workload; resubmitting to resume from step %d",
                    run.id, run.steps_done)
        self.executor.submit(run)
        self.executor.admit(run.id)

    def _requeue_after(self, seconds: float) -> None:
        """A pass again within `seconds`, whatever else happens meanwhile."""
        at = time.monotonic() + max(0.0, seconds)
        with self._requeue_lock:
            self._requeue_at = at if self._requeue_at is None else min(self._requeue_at, at)

    def _finalize(self, run: Run, status: RunStatus, reason: str) -> None:
        """For a runner that could not: the result comes from the ledger."""
        final = self.lifecycle.finish(run, status, reason)
        if final is not None:
            log.warning("run %d finalized as %s: %s", run.id, status.value, reason)
            telemetry.RUNS_FINALIZED.labels(status.value).inc()
            self.notify(final, "Finished", f"run {status.value}: {reason}")
        self.executor.forget(run.id)
        self._backoff.succeeded(run.id)

    def _admit(self, not_ready: set[int]) -> None:
        spend = DailyLimit(self.limits.daily_spend_usd, utc_day(self.clock()))
        admitted = self.lifecycle.admit(self.limits.per_user, self.limits.global_,
                                        skip=not_ready, spend=spend)
        if len(admitted) > 1 and self.executor.concurrent_admission:
            # Admission is decided (in the store) already; the workloads' API calls go
            # out side by side rather than one round trip after another.
            with cf.ThreadPoolExecutor(min(ADMIT_CONCURRENCY, len(admitted)),
                                       thread_name_prefix="admit") as pool:
                list(pool.map(self._admit_one, admitted))
        else:
            for run in admitted:
                self._admit_one(run)

    def _admit_one(self, run: Run) -> None:
        with run_context(run.id, run.user_id):
            self._admit_workload(run)

    def _admit_workload(self, run: Run) -> None:
        telemetry.RUNS_ADMITTED.inc()
        if run.admitted_at is not None:
            telemetry.ADMISSION_WAIT.observe(
                (run.admitted_at - run.created_at).total_seconds())
        log.info("run %d admitted (user %s)", run.id, run.user_id)
        try:
            self._start_workload(run)
        except Exception as exc:  # admitted in the store: the next pass unsuspends it
            self._requeue_after(1.0)
            telemetry.RUN_ERRORS.labels("temporary").inc()
            log.warning("run %d: unsuspending failed (%s); the next pass retries", run.id, exc)
            return
        self.notify(run, "Admitted", "run admitted within the user and global limits")

    def _start_workload(self, run: Run) -> None:
        try:
            self.executor.admit(run.id)
        except WorkloadMissing:
            # Admitted in the store, its workload never made: make it now, started.
            log.warning("run %d: admitted without a workload; creating it", run.id)
            self.executor.submit(run)
            self.executor.admit(run.id)

    def _delete_orphans(self, active_ids: set[int]) -> None:
        # One query for all of them: finished Jobs stay until their TTL, and every watch
        # event starts a pass.
        workloads = self.executor.workload_run_ids()
        self._finished &= workloads  # gone (their TTL): forgotten here too
        others = workloads - active_ids - self._finished
        statuses = self.store.run_statuses(others)
        for run_id in others:
            status = statuses.get(run_id)
            if status is None:
                log.warning("workload of run %d has no run; deleting it", run_id)
                telemetry.ORPHANS_DELETED.inc()
                self.executor.stop(run_id)
            elif status.is_terminal:
                self.executor.forget(run_id)
                self._finished.add(run_id)

    def _observe_ended(self, active: set[int]) -> None:
        """A run active in the last pass and not in this one has ended: observe its
        duration and, for a stop, the time from the request to the final status. Once
        per run, whoever wrote the final status (the runner or this reconciler)."""
        ended, self._active = self._active - active, active
        for run_id in ended:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                continue
            if not run.status.is_terminal or run.finished_at is None:
                continue
            if run.admitted_at:
                telemetry.RUN_DURATION.labels(run.status.value).observe(
                    (run.finished_at - run.admitted_at).total_seconds())
            if run.status is RunStatus.STOPPED and run.stop_requested_at:
                telemetry.STOP_SECONDS.observe(
                    max(0.0, (run.finished_at - run.stop_requested_at).total_seconds()))

    def _export_counts(self) -> None:
        counts = self.store.count_runs_by_status()
        for status in RunStatus:
            telemetry.RUNS_BY_STATUS.labels(status.value).set(counts.get(status, 0))
        telemetry.RUNS_HELD_FOR_SPEND.set(self.store.count_held_for_spend())

    # -- the loop ----------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, *, interval: float = 15.0,
                    active: threading.Event | None = None) -> None:
        """Reconcile on every change the executor or the API signals, and at least every
        `interval` seconds (a resync, as informers do); only while `active` is set (the
        replica holds the Lease) when one is given."""
        while not stop.is_set():
            if active is not None and not active.wait(1.0):
                continue
            try:
                self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; retrying")
                stop.wait(1.0)
            self.wait_for_change(stop, interval)

    def wait_for_change(self, stop: threading.Event, interval: float) -> None:
        """Until a change is signalled, `interval` passes, or a schedule falls due."""
        due = self.scheduler.seconds_until_next()
        deadline = time.monotonic() + (interval if due is None else min(interval, due + 0.05))
        with self._requeue_lock:
            if self._requeue_at is not None:
                deadline, self._requeue_at = min(deadline, self._requeue_at), None
        while not stop.is_set() and time.monotonic() < deadline:
            if self.wake.wait(0.05) or self.executor.changed.is_set():
                break
        self.wake.clear()
        self.executor.changed.clear()


class RunBackoff:
    """Per-run exponential backoff for reconcile errors: a failing run is left alone for
    a while, the others are not held up (controller-runtime's rate-limited queue)."""

    def __init__(self, base: float = 0.5, cap: float = 15.0) -> None:
        self.base, self.cap = base, cap
        self._failures: dict[int, tuple[int, float]] = {}  # run -> (count, retry at)

    def waiting(self, run_id: int) -> bool:
        entry = self._failures.get(run_id)
        return entry is not None and time.monotonic() < entry[1]

    def failed(self, run_id: int) -> float:
        count = self._failures.get(run_id, (0, 0.0))[0] + 1
        delay = min(self.cap, self.base * 2.0 ** (count - 1))
        self._failures[run_id] = (count, time.monotonic() + delay)
        return delay

    def succeeded(self, run_id: int) -> None:
        self._failures.pop(run_id, None)
