"""The reconciler's decisions, driven by scripted workload states on a real SQLite store.

The executors themselves are proven for real elsewhere (local processes in
tests/integration, Jobs in tests/cluster); here each state a Job or process can be in
meets each run status, quickly and exhaustively.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Iterable
from decimal import Decimal

import pytest

from controller.executor import Executor, WorkloadRefused
from controller.reconciler import Limits, Reconciler, RunBackoff
from controller.telemetry import RUN_ERRORS
from controller.workload import GONE, WorkloadState
from core.eventlog.sqlite_log import SqliteEventLog
from core.lifecycle import Lifecycle
from core.records import Decision, Run
from core.status import RunStatus
from core.store import Store
from core.store.sqlite import SqliteStore
from tests.factories import daily_spec, make_model, run_status


class ScriptedExecutor(Executor):
    name = "scripted"

    def __init__(self, gone_means_stopped: bool) -> None:
        super().__init__()
        self.gone_means_stopped = gone_means_stopped
        self.states: dict[int, WorkloadState] = {}
        self.calls: list[tuple[str, int]] = []

    def submit(self, run: Run) -> None:
        self.calls.append(("submit", run.id))
        self.states.setdefault(run.id, WorkloadState("suspended"))

    def admit(self, run_id: int) -> None:
        self.calls.append(("admit", run_id))
        self.states[run_id] = WorkloadState("pending")

    def stop(self, run_id: int) -> None:
        self.calls.append(("stop", run_id))

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        return {r: self.states.get(r, GONE) for r in run_ids}

    def workload_run_ids(self) -> set[int]:
        return set(self.states)


def reconciler(store: Store, executor: Executor, per_user: int = 2) -> Reconciler:
    assert isinstance(store, SqliteStore)
    return Reconciler(store, SqliteEventLog(store), executor, Limits(per_user, 10),
                      lost_grace_seconds=0)


def queued(store: Store, n: int, user: str = "u") -> list[Run]:
    model = make_model(store, user, f"m-{user}")
    spec = daily_spec()
    return [store.create_run(user, model.id, spec, spec.step_count())[0] for _ in range(n)]


def test_admits_oldest_first_within_the_limit_and_never_twice(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    runs = queued(store, 4)
    rec = reconciler(store, ex)
    rec.reconcile_once()
    rec.reconcile_once()
    assert [c for c in ex.calls if c[0] == "admit"] == [("admit", runs[0].id),
                                                         ("admit", runs[1].id)]
    assert [store.get_run(r.id).status for r in runs] == [
        RunStatus.ADMITTED, RunStatus.ADMITTED, RunStatus.QUEUED, RunStatus.QUEUED]


class FlakyConcurrentExecutor(ScriptedExecutor):
    """Unsuspends side by side (as the Kubernetes executor does); `refuse` fails once."""

    concurrent_admission = True

    def __init__(self, refuse: int) -> None:
        super().__init__(gone_means_stopped=True)
        self.refuse = refuse
        self.lock = threading.Lock()

    def admit(self, run_id: int) -> None:
        with self.lock:
            if run_id == self.refuse:
                raise ConnectionError("API server unreachable")
            super().admit(run_id)


def test_a_passs_admitted_events_follow_all_its_unsuspends_and_only_those_that_worked(
        store: Store) -> None:
    """Events are API writes too: sent among a burst's unsuspends they slowed admission,
    so a pass records them after its workloads started; a run whose unsuspend failed
    gets none (the next pass starts it)."""
    runs = queued(store, 6)
    ex = FlakyConcurrentExecutor(refuse=runs[2].id)
    rec = Reconciler(store, SqliteEventLog(store), ex, Limits(10, 10), lost_grace_seconds=0,
                     notify=lambda run, reason, message: ex.calls.append((reason, run.id)))
    rec.reconcile_once()
    kinds = [kind for kind, _ in ex.calls if kind != "submit"]
    assert kinds == ["admit"] * 5 + ["Admitted"] * 5, ex.calls
    assert {r for k, r in ex.calls if k == "Admitted"} == {r.id for r in runs} - {runs[2].id}
    assert [r for k, r in ex.calls if k == "Admitted"] == sorted(  # in admission order
        r for k, r in ex.calls if k == "Admitted")


def test_a_suspended_workload_of_an_admitted_run_is_admitted_again(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    ex.states[run.id] = WorkloadState("suspended")
    reconciler(store, ex).reconcile_once()
    assert ("admit", run.id) in ex.calls


@pytest.mark.parametrize(("state", "status", "reason"), [
    (WorkloadState("failed", "OOMKilled: the runner exceeded its memory limit", 137),
     RunStatus.FAILED, "OOMKilled"),
    (WorkloadState("succeeded", exit_code=0), RunStatus.FAILED, "without saving"),
    (WorkloadState("gone", "Job deleted"), RunStatus.STOPPED, "Job deleted"),
])
def test_a_runner_that_ended_without_saving_is_finalized_from_the_ledger(
        store: Store, state: WorkloadState, status: RunStatus, reason: str) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    run_status(store).start_attempt(run.id)
    ex.states[run.id] = state
    reconciler(store, ex).reconcile_once()
    final = store.get_run(run.id)
    assert final.status is status and reason in str(final.status_reason)
    assert (final.result or {})["from_ledger"] is True


def test_a_stuck_failure_frees_the_node(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    ex.states[run.id] = WorkloadState("failed", "ImagePullBackOff: no such image",
                                      pod_alive=True)
    reconciler(store, ex).reconcile_once()
    assert store.get_run(run.id).status is RunStatus.FAILED and ("stop", run.id) in ex.calls


def test_a_workload_being_deleted_marks_the_run_stopping_and_waits(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    run_status(store).start_attempt(run.id)
    ex.states[run.id] = WorkloadState("running", "Job deleted", pod_alive=True, deleting=True)
    rec = reconciler(store, ex)
    rec.reconcile_once()
    assert store.get_run(run.id).status is RunStatus.STOPPING
    rec.reconcile_once()  # still terminating: no second delete, no finalization
    assert ("stop", run.id) not in ex.calls
    assert store.get_run(run.id).status is RunStatus.STOPPING
    ex.states[run.id] = GONE
    rec.reconcile_once()
    assert store.get_run(run.id).status is RunStatus.STOPPED


def test_a_lost_local_runner_is_resubmitted_to_resume(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=False)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    run_status(store).start_attempt(run.id)
    reconciler(store, ex).reconcile_once()
    assert ex.calls[:2] == [("submit", run.id), ("admit", run.id)]
    assert store.get_run(run.id).status is RunStatus.RUNNING


def test_a_workload_whose_run_is_gone_is_deleted(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    ex.states[4242] = WorkloadState("running", pod_alive=True)
    reconciler(store, ex).reconcile_once()
    assert ("stop", 4242) in ex.calls


def test_finished_runs_workloads_are_looked_up_once_while_they_stay(store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    runs = queued(store, 3)
    for run in runs:
        run_status(store).transition(run.id, RunStatus.FAILED, reason="done")
        ex.states[run.id] = WorkloadState("failed", pod_alive=False)
    rec = reconciler(store, ex)
    asked: list[set[int]] = []
    real = store.run_statuses

    def run_statuses(ids: Collection[int]) -> dict[int, RunStatus]:
        asked.append(set(ids))
        return real(ids)

    store.run_statuses = run_statuses  # type: ignore[method-assign, assignment]
    rec.reconcile_once()
    rec.reconcile_once()
    assert asked == [{r.id for r in runs}, set()]
    del ex.states[runs[0].id]  # its TTL removed it
    ex.states[4242] = WorkloadState("running", pod_alive=True)  # a new orphan
    rec.reconcile_once()
    assert asked[-1] == {4242} and ("stop", 4242) in ex.calls
    assert rec._finished == {runs[1].id, runs[2].id}


class RefusingExecutor(ScriptedExecutor):
    """Refuses to create the workloads of some runs, as an API server does."""

    def __init__(self, refuse: dict[int, BaseException]) -> None:
        super().__init__(gone_means_stopped=True)
        self.refuse = refuse

    def submit(self, run: Run) -> None:
        self.calls.append(("submit", run.id))
        if run.id in self.refuse:
            raise self.refuse[run.id]
        self.states.setdefault(run.id, WorkloadState("suspended"))


def test_a_quota_refusal_keeps_the_run_queued_with_the_message_and_the_rest_go_on(
        store: Store) -> None:
    runs = queued(store, 3)
    quota = WorkloadRefused('403 jobs.batch "tickrun-run-1" is forbidden: exceeded quota: '
                            "jobs, requested: count/jobs.batch=1, used: count/jobs.batch=2, "
                            "limited: count/jobs.batch=2", permanent=False)
    ex = RefusingExecutor({runs[0].id: quota})
    rec = reconciler(store, ex, per_user=3)
    rec.reconcile_once()
    first = store.get_run(runs[0].id)
    assert first.status is RunStatus.QUEUED and "exceeded quota" in str(first.status_reason)
    assert [store.get_run(r.id).status for r in runs[1:]] == [RunStatus.ADMITTED] * 2
    # Never admitted without its workload, never stopped: it waits for the quota.
    rec._backoff = RunBackoff(base=0)
    for _ in range(3):
        rec.reconcile_once()
    assert store.get_run(runs[0].id).status is RunStatus.QUEUED
    # The quota frees: the run's Job is made, the reason cleared, the run admitted.
    del ex.refuse[runs[0].id]
    rec.reconcile_once()
    rec.reconcile_once()
    after = store.get_run(runs[0].id)
    assert after.status is RunStatus.ADMITTED and after.status_reason is None


def test_an_invalid_workload_fails_its_run_with_the_message(store: Store) -> None:
    runs = queued(store, 2)
    invalid = WorkloadRefused('422 Job.batch "tickrun-run-1" is invalid: spec.template...',
                              permanent=True)
    ex = RefusingExecutor({runs[0].id: invalid})
    reconciler(store, ex).reconcile_once()
    failed = store.get_run(runs[0].id)
    assert failed.status is RunStatus.FAILED and "is invalid" in str(failed.status_reason)
    assert store.get_run(runs[1].id).status is RunStatus.ADMITTED


def test_a_temporary_error_on_one_run_does_not_hold_up_the_others(store: Store) -> None:
    runs = queued(store, 2)
    ex = RefusingExecutor({runs[0].id: TimeoutError("the API server did not answer")})
    rec = reconciler(store, ex)
    before = RUN_ERRORS.labels("temporary")._value.get()
    rec.reconcile_once()  # no exception escapes the pass
    assert store.get_run(runs[0].id).status is RunStatus.QUEUED
    assert store.get_run(runs[1].id).status is RunStatus.ADMITTED
    assert RUN_ERRORS.labels("temporary")._value.get() == before + 1
    rec.reconcile_once()  # in backoff: not tried again at once
    assert ex.calls.count(("submit", runs[0].id)) == 1


def test_a_result_from_the_ledger_names_the_decider_and_counts_tokens_and_cost(
        store: Store) -> None:
    """The controller's result for a runner that died is the runner's own, less the
    benchmark: one function (core.lifecycle.run_result) computes both."""
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    Lifecycle(store).start(run.id, decider="llm")
    bar = dt.datetime(2024, 1, 2, 21, tzinfo=dt.UTC)
    for step, cost in enumerate((Decimal("0.002"), None)):
        store.record_decision(Decision(run_id=run.id, step=step, bar_time=bar, action="hold",
                                       orders=[], reasoning="r", outcome="hold",
                                       latency_ms=1.0, tokens_in=100, tokens_out=10,
                                       cost=cost))
        store.complete_step(run.id, step, equity=Decimal(100_000 + step),
                            cash=Decimal(100_000))
    ex.states[run.id] = WorkloadState("failed", "OOMKilled: the runner exceeded its memory "
                                      "limit", 137)
    reconciler(store, ex).reconcile_once()
    result = store.get_run(run.id).result or {}
    assert result["from_ledger"] is True and result["decider"] == "llm"
    assert (result["tokens_in"], result["tokens_out"], result["cost"]) == (200, 20, "0.002")
    assert result["steps_done"] == 2 and result["final_cash"] == "100000.000000"


def test_a_stop_deletes_its_workload_once_and_the_reconciler_only_retries(
        store: Store) -> None:
    ex = ScriptedExecutor(gone_means_stopped=True)
    (run,) = queued(store, 1)
    run_status(store).transition(run.id, RunStatus.ADMITTED)
    run_status(store).start_attempt(run.id)
    ex.states[run.id] = WorkloadState("running", pod_alive=True)
    stopping = Lifecycle(store, None, ex).request_stop(store.get_run(run.id))
    now = [dt.datetime.now(dt.UTC)]
    rec = Reconciler(store, SqliteEventLog(store), ex,
                     Limits(2, 10), clock=lambda: now[0])
    assert stopping.status is RunStatus.STOPPING and ex.calls.count(("stop", run.id)) == 1
    # The API's delete is under way (its watch event not seen yet): no second delete,
    # and a pass comes back when a retry would be due.
    rec.reconcile_once()
    assert ex.calls.count(("stop", run.id)) == 1 and rec.queue.scheduled(run.id) is not None
    # It did not happen (the API's call failed): the retry deletes it, once.
    now[0] += dt.timedelta(seconds=6)
    rec.reconcile_once()
    assert ex.calls.count(("stop", run.id)) == 2


def test_a_failed_create_is_tried_again_after_its_backoff_not_at_the_resync(
        store: Store) -> None:
    (run,) = queued(store, 1)
    ex = RefusingExecutor({run.id: RuntimeError("503 the API server is restarting")})
    rec = reconciler(store, ex)
    rec.reconcile_once()
    assert ex.calls == [("submit", run.id)] and store.get_run(run.id).status is RunStatus.QUEUED
    del ex.refuse[run.id]  # the API server is back; no event tells the controller
    stop = threading.Event()

    def controller() -> None:
        rec.wait_for_change(stop, interval=300.0)  # the resync is far away
        rec.reconcile_once()
    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    thread.join(10)  # the backoff (0.5 s) brings the pass, not the resync
    assert not thread.is_alive()
    assert ex.calls == [("submit", run.id), ("submit", run.id), ("admit", run.id)]
    assert store.get_run(run.id).status is RunStatus.ADMITTED
