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
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal

from controller import telemetry
from controller.executor import Executor, WorkloadMissing, WorkloadRefused
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
from controller.scheduler import NotifySchedule, Scheduler
from controller.workload import WorkloadState
from controller.workqueue import WorkQueue
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
ADMIT_CONCURRENCY = 16

# A stop deletes its workload once, from the API (Lifecycle.request_stop). A pass that
# meets a `stopping` run whose workload is alive and not being deleted deletes it only
# when the stop is older than this: the API's delete failed (its watch event is due
# within milliseconds otherwise); the pass comes back then.
STOP_DELETE_RETRY = dt.timedelta(seconds=5)

# The status gauges count every run: between resyncs, at most this often.
COUNTS_EVERY = 5.0

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
        self.queue: WorkQueue = executor.changes  # run ids that changed, from any side
        self.policy = Policy(executor.gone_means_stopped, self.lost_grace, STOP_DELETE_RETRY)
        self._counts_at = 0.0  # monotonic: when the status gauges were last exported

    # -- passes ----------------------------------------------------------------------
    def reconcile_once(self) -> None:
        """A full pass (a resync): every run active or queued, and orphan workloads."""
        started = time.perf_counter()
        try:
            self.queue.take()  # this pass covers whatever was waiting
            self._fire_schedules()
            runs = self.store.runs_with_status(ACTIVE_OR_QUEUED)
            active = {r.id for r in runs}
            ended, self._active = self._active - active, active
            self._observe_ended(ended)
            self._reconcile_runs(runs)
            self._admit()
            self._delete_orphans(active)
            self._export_counts(force=True)
        except Exception:
            telemetry.RECONCILE_ERRORS.inc()
            raise
        finally:
            telemetry.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def reconcile_changed(self, run_ids: Collection[int]) -> None:
        """A pass over the runs that changed: its cost follows them, not the runs held."""
        started = time.perf_counter()
        try:
            self._fire_schedules()
            runs, settled = self._read_runs(run_ids)
            active = {r.id for r in runs}
            self._observe_ended((set(run_ids) & self._active) - active)
            self._active = (self._active - set(run_ids)) | active
            self._reconcile_runs(runs)
            self._admit()
            self._settle_workloads(settled)
            self._export_counts()
        except Exception:
            telemetry.RECONCILE_ERRORS.inc()
            raise
        finally:
            took = time.perf_counter() - started
            telemetry.RECONCILE_SECONDS.observe(took)
            telemetry.CHANGED_PASS_SECONDS.observe(took)
            telemetry.RUN_CHANGES.inc(len(run_ids))

    def _read_runs(self, run_ids: Collection[int]) -> tuple[list[Run], dict[int, RunStatus | None]]:
        """The active or queued runs among `run_ids`, and the others' status (None: no
        such run)."""
        runs: list[Run] = []
        settled: dict[int, RunStatus | None] = {}
        for run_id in run_ids:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                settled[run_id] = None
                continue
            if run.status.is_terminal:
                settled[run_id] = run.status
            else:
                runs.append(run)
        return runs, settled

    def _reconcile_runs(self, runs: list[Run]) -> None:
        states = self.executor.observe(r.id for r in runs)
        for run in runs:
            with run_context(run.id, run.user_id):  # its log lines carry the ids
                self._reconcile_guarded(run, states[run.id])

    def _fire_schedules(self) -> None:
        """Due schedules make their runs first, so this pass admits them."""
        try:
            self.scheduler.fire_due()
        except Exception as exc:  # the runs already there are reconciled regardless
            log.warning("schedules not fired this pass (%s); the next pass retries", exc)

    def _reconcile_guarded(self, run: Run, state: WorkloadState) -> None:
        """One run's reconciliation; its errors are its own."""
        if self._backoff.waiting(run.id):
            return  # the queue brings it back when its backoff ends
        try:
            for action in plan(run, state, now=self.clock(), policy=self.policy):
                self._carry_out(run, action)
        except WorkloadRefused as exc:
            self._refused(run, exc)
        except Exception as exc:  # a 429, a 5xx, a timeout, a conflict: try again later
            delay = self._backoff.failed(run.id)
            self.queue.add_after(run.id, delay)  # then, not at the next event or resync
            telemetry.RUN_ERRORS.labels("temporary").inc()
            log.warning("run %d: reconcile failed (%s: %s); retrying in %.1fs", run.id,
                        type(exc).__name__, exc, delay)
        else:
            self._backoff.succeeded(run.id)

    def _carry_out(self, run: Run, action: Action) -> None:
        match action:
            case Submit(clear_reason=clear):
                self.executor.submit(run)
                if clear:
                    self.lifecycle.note(run.id, RunStatus.QUEUED, None)  # the quota freed
            case Unsuspend():
                self.executor.admit(run.id)
            case DeleteWorkload(why=why):
                log.warning("run %d: %s; deleting its workload", run.id, why)
                self.executor.stop(run.id)
            case MarkStopping(why=why):
                if self.lifecycle.mark_stopping(run, why):
                    self.notify(run, "StopRequested", f"stopping: {why}")
            case Finalize(status=status, reason=reason):
                self._finalize(run, status, reason)
            case Resume():
                self._resume(run)
            case RequeueAfter(seconds=seconds):
                self.queue.add_after(run.id, seconds)

    def _refused(self, run: Run, exc: WorkloadRefused) -> None:
        if exc.permanent:
            telemetry.RUN_ERRORS.labels("invalid").inc()
            self._finalize(run, RunStatus.FAILED, f"workload refused: {exc}")
            return
        delay = self._backoff.failed(run.id)
        self.queue.add_after(run.id, delay)
        telemetry.RUN_ERRORS.labels("refused").inc()
        reason = f"waiting: workload refused: {exc}"
        if run.status_reason != reason:
            self.lifecycle.note(run.id, RunStatus.QUEUED, reason)
            self.notify(run, "WorkloadRefused", str(exc))
        log.warning("run %d: workload refused (%s); queued, retrying in %.1fs", run.id, exc,
                    delay)

    def _not_ready(self, queued: list[Run]) -> set[int]:
        """Queued runs without a workload (refused, or in backoff): not admissible yet."""
        fresh = self.executor.observe(r.id for r in queued)
        return {run_id for run_id, state in fresh.items()
                if state.phase == "gone" or self._backoff.waiting(run_id)}

    def _resume(self, run: Run) -> None:
        # The pass read the run before it looked for the runner: a runner that finalized
        # the run and exited in between is not lost. Ask the store again, now.
        if self.store.get_run(run.id).status.is_terminal:
            return
        log.warning("run %d has no workload; resubmitting to resume from step %d",
                    run.id, run.steps_done)
        self.executor.submit(run)
        self.executor.admit(run.id)

    def _finalize(self, run: Run, status: RunStatus, reason: str) -> None:
        """For a runner that could not: the result comes from the ledger."""
        final = self.lifecycle.finish(run, status, reason)
        if final is not None:
            log.warning("run %d finalized as %s: %s", run.id, status.value, reason)
            telemetry.RUNS_FINALIZED.labels(status.value).inc()
            self.notify(final, "Finished", f"run {status.value}: {reason}")
        self.executor.forget(run.id)
        self._backoff.succeeded(run.id)

    def _admit(self) -> None:
        queued = self.store.runs_with_status([RunStatus.QUEUED])
        if not queued:
            return
        not_ready = self._not_ready(queued)
        spend = DailyLimit(self.limits.daily_spend_usd, utc_day(self.clock()))
        admitted = self.lifecycle.admit(self.limits.per_user, self.limits.global_,
                                        skip=not_ready, spend=spend)
        if len(admitted) > 1 and self.executor.concurrent_admission:
            # Admission is decided (in the store) already; the workloads' API calls go
            # out side by side rather than one round trip after another.
            with cf.ThreadPoolExecutor(min(ADMIT_CONCURRENCY, len(admitted)),
                                       thread_name_prefix="admit") as pool:
                started = list(pool.map(self._admit_one, admitted))
        else:
            started = [self._admit_one(run) for run in admitted]
        # Their Events once the pass's workloads are started: an Event is an API write
        # too, and sent among the unsuspends it slowed a burst's admission by a sixth.
        for run, ok in zip(admitted, started, strict=True):
            if ok:
                with run_context(run.id, run.user_id):  # as it was sent inside _admit_one
                    self.notify(run, "Admitted",
                                "run admitted within the user and global limits")

    def _admit_one(self, run: Run) -> bool:
        with run_context(run.id, run.user_id):
            return self._admit_workload(run)

    def _admit_workload(self, run: Run) -> bool:
        """The admitted run's workload started; False when the next pass must try again."""
        telemetry.RUNS_ADMITTED.inc()
        if run.admitted_at is not None:
            telemetry.ADMISSION_WAIT.observe(
                (run.admitted_at - run.created_at).total_seconds())
        log.info("run %d admitted (user %s)", run.id, run.user_id)
        try:
            self._start_workload(run)
        except Exception as exc:  # admitted in the store: the next pass unsuspends it
            self.queue.add_after(run.id, 1.0)
            telemetry.RUN_ERRORS.labels("temporary").inc()
            log.warning("run %d: unsuspending failed (%s); the next pass retries", run.id, exc)
            return False
        return True

    def _start_workload(self, run: Run) -> None:
        try:
            self.executor.admit(run.id)
        except WorkloadMissing:
            # Admitted in the store, its workload never made: make it now, started.
            log.warning("run %d: admitted without a workload; creating it", run.id)
            self.executor.submit(run)
            self.executor.admit(run.id)

    def _delete_orphans(self, active_ids: set[int]) -> None:
        # One query for all of them: finished Jobs stay until their TTL.
        workloads = self.executor.workload_run_ids()
        self._finished &= workloads  # gone (their TTL): forgotten here too
        others = workloads - active_ids - self._finished
        statuses = self.store.run_statuses(others)
        self._settle_workloads({run_id: statuses.get(run_id) for run_id in others},
                               workloads=workloads)

    def _settle_workloads(self, settled: Mapping[int, RunStatus | None], *,
                          workloads: set[int] | None = None) -> None:
        """Workloads of runs that ended (kept until their TTL, not asked about again)
        or that have no run at all (deleted)."""
        # A final run settled already needs nothing: most watch events of a finished
        # Job (its pod ending, going) ask for no set of every workload.
        pending = {run_id for run_id, status in settled.items()
                   if status is None or run_id not in self._finished}
        if not pending:
            return
        workloads = self.executor.workload_run_ids() if workloads is None else workloads
        for run_id in pending & workloads:
            status = settled.get(run_id)
            if status is None:
                log.warning("workload of run %d has no run; deleting it", run_id)
                telemetry.ORPHANS_DELETED.inc()
                self.executor.stop(run_id)
            elif status.is_terminal and run_id not in self._finished:
                self.executor.forget(run_id)
                self._finished.add(run_id)

    def _observe_ended(self, ended: set[int]) -> None:
        """A run active in an earlier pass and not in this one has ended: observe its
        duration and, for a stop, the time from the request to the final status. Once
        per run, whoever wrote the final status (the runner or this reconciler)."""
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

    def _export_counts(self, *, force: bool = False) -> None:
        """The status gauges: a count over every run, so at most once per
        COUNTS_EVERY seconds between resyncs (a scrape comes every 15 s or so)."""
        now = time.monotonic()
        if not force and now - self._counts_at < COUNTS_EVERY:
            return
        self._counts_at = now
        counts = self.store.count_runs_by_status()
        for status in RunStatus:
            telemetry.RUNS_BY_STATUS.labels(status.value).set(counts.get(status, 0))
        telemetry.RUNS_HELD_FOR_SPEND.set(self.store.count_held_for_spend())

    # -- the loop ----------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, *, interval: float = 300.0,
                    active: threading.Event | None = None) -> None:
        """Reconcile the runs that changed as their ids reach the queue, everything
        every `interval` seconds (a resync, as informers do) and when woken; only while
        `active` is set (the replica holds the Lease) when one is given, with a full
        pass on taking it."""
        next_full, leading = 0.0, False
        while not stop.is_set():
            if active is not None and not active.wait(1.0):
                leading = False
                continue
            if not leading:
                next_full, leading = 0.0, True
            if time.monotonic() >= next_full or self.wake.is_set():
                self.wake.clear()
                if self._pass(self.reconcile_once):
                    next_full = time.monotonic() + interval
            else:
                changed = self.queue.take()
                if not self._pass(functools.partial(self.reconcile_changed, changed)):
                    for run_id in changed:  # the store or the API failed: they wait
                        self.queue.add_after(run_id, 1.0)
            self.wait_for_change(stop, max(0.0, next_full - time.monotonic()))

    def _pass(self, reconcile: Callable[[], None]) -> bool:
        try:
            reconcile()
        except Exception:
            log.exception("reconcile pass failed; retrying")
            return False
        return True

    def wait_for_change(self, stop: threading.Event, interval: float) -> None:
        """Until a run id is due, a full pass is asked for, `interval` passes, or a
        schedule falls due."""
        due = self.scheduler.seconds_until_next()
        timeout = interval if due is None else min(interval, due + 0.05)
        self.queue.wait(timeout, interrupted=lambda: stop.is_set() or self.wake.is_set())

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
