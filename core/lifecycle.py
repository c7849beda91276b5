"""One owner of a run's life: every status change of a run, and what follows it.

The API (intake, stop), the reconciler (admission, lost and failed workloads, notes)
and the runner (start, notes, finish) change a run's status or its reason only through
here, so what follows a change is written once: a `status` event for every change
(queued, admitted, running, stopping, final) that a follower sees in order, the result
computed from the ledger, the call that deletes a workload. The status writes
themselves (core.store.run_status) are not on the Store interface, and an import-linter
contract lets no other module import them. The state machine (core.status) and fencing
(the runner's attempt) are enforced there in the same transaction as the change;
admission is chosen by core.admission in the store's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from core import contamination, metrics, performance
from core.errors import IllegalTransition, NotFound
from core.eventlog import EventLog, EventType
from core.eventlog.payloads import result_data, status_data
from core.records import Decision, OrderState, Run
from core.research.audit import LookaheadAudit
from core.spec import DataSource, DeciderKind, RunSpec
from core.spend import DailyLimit
from core.status import RunStatus
from core.store import Store
from core.store.run_status import RunStatusWrites

log = logging.getLogger(__name__)

# How the final events go out: the runner's buffered publisher (Redis may be down), or
# the event log directly.
Publish = Callable[[EventType, dict[str, Any]], None]


class Workloads(Protocol):
    """The executor calls a run's changes need (controller.executor.Executor)."""

    def submit(self, run: Run) -> None: ...

    def stop(self, run_id: int) -> None: ...


@dataclass
class DecisionTally:
    """What the result needs from the completed decisions, gathered in one pass."""

    equity: list[Decimal] = field(default_factory=list)
    cash: Decimal | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost: Decimal = Decimal(0)  # of the decisions whose cost is known
    # Decisions that used tokens but have no cost (no price for the model): the result
    # says so, rather than let `cost` read as the whole spend.
    unknown_cost: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, decisions: Iterable[Decision]) -> DecisionTally:
        tally = cls()
        for d in decisions:
            if d.completed:
                tally.add(d)
        return tally

    def add(self, d: Decision) -> None:
        if d.equity is not None:
            self.equity.append(d.equity)
        if d.cash is not None:
            self.cash = d.cash
        self.tokens_in += d.tokens_in
        self.tokens_out += d.tokens_out
        self.tokens_cached += d.tokens_cached
        if d.cost is not None:
            self.cost += d.cost
        elif d.tokens_in or d.tokens_out:
            self.unknown_cost += 1
        self.outcomes[d.outcome] = self.outcomes.get(d.outcome, 0) + 1

    def usage(self) -> metrics.LlmUsage:
        """The spend for the metrics: the cost is unknown (None) when a decision's is."""
        return metrics.LlmUsage(tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                                cost=None if self.unknown_cost else self.cost,
                                decisions=sum(self.outcomes.values()))


def run_result(store: Store, run: Run, ending: str, *, decider: str | None = None,
               benchmark: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
               from_ledger: bool = False) -> dict[str, Any]:
    """The result of a run from its ledger, streamed a page at a time. The runner adds
    the buy-and-hold benchmark (it has the bars); the controller, finishing for a
    runner that died, cannot, and says so with `from_ledger`."""
    audit = LookaheadAudit(run.spec.interval)
    tally = DecisionTally.of(audit.passing(store.iter_decisions(run.id)))
    trades = performance.TradeTally.of(store.iter_trades(run.id))
    per_year = performance.periods_per_year(run.spec.mode.value)
    summary = performance.summary_of(run.spec.initial_cash, tally.equity, trades, per_year)
    cash = run.spec.initial_cash if tally.cash is None else tally.cash
    played_by = decider or run.decider or run.spec.decider
    summary.update({
        "ending": ending,
        "steps_done": len(tally.equity),
        "steps_total": run.steps_total,
        "final_cash": str(cash.quantize(performance.Q)),
        "decider": played_by,
        "decider_reason": run.decider_reason,
        "tokens_in": tally.tokens_in,
        "tokens_out": tally.tokens_out,
        "tokens_cached": tally.tokens_cached,
        "cost": str(tally.cost),
        "unknown_cost_decisions": tally.unknown_cost,
        "decisions_by_outcome": tally.outcomes,
        "benchmark": benchmark,
        "data": data or data_label(run.spec),
        # What the agent's tools could know: clean, "N items" past their bar, or
        # "possible" (an outside tool that does not answer as of the bar).
        "lookahead": audit.verdict,
        "research": audit.summary(),
        "metrics": metrics.of_tally([run.spec.initial_cash, *tally.equity], trades, per_year,
                                    tally.usage()),
        "contamination": run_contamination(store, run, played_by),
    })
    summary["orders"] = final_order_counts(store.count_orders(run.id))
    if from_ledger:
        summary["from_ledger"] = True
    return summary


def run_contamination(store: Store, run: Run, decider: str | None
                      ) -> contamination.ContaminationMark | None:
    """Whether the run's sessions lie inside its model's training data (core.contamination);
    None for a run no LLM played. A replay carries the mark of the run it replays (its
    trades are that run's), which the source's own model decides."""
    try:
        for _ in range(5):  # a replay of a replay...: a few hops at most
            if decider != DeciderKind.REPLAY:
                break
            run = store.get_run(int(str(run.spec.decider_params["source_run_id"])))
            decider = run.decider or run.spec.decider
        if decider != DeciderKind.LLM:
            return None
        model = store.get_model(run.model_id)
    except (NotFound, KeyError, ValueError):
        return None
    try:
        days = run.spec.session_days()
    except Exception as exc:  # the result is written all the same
        log.warning("run %d: sessions unknown (%s); its dates stand for them", run.id, exc)
        days = []
    return contamination.mark(model.llm, model.parameters,
                              days or [run.spec.first_day, run.spec.last_day])


def final_order_counts(counts: dict[OrderState, int]) -> dict[str, int]:
    """Every order of a run by its final state. A result is written with the run's
    final status, and that status change cancels the orders still open (the store
    does, in its transaction): they count as cancelled."""
    final = dict(counts)
    if OrderState.OPEN in final:
        still_open = final.pop(OrderState.OPEN)
        final[OrderState.CANCELLED] = final.get(OrderState.CANCELLED, 0) + still_open
    return {state.value: n for state, n in sorted(final.items())}


def data_label(spec: RunSpec) -> dict[str, Any]:
    """Where a run's bars came from; `synthetic` says plainly they were no market data.
    The runner adds the data quality (`bars`, `bars_filled`: minutes with no trade)."""
    source = spec.data.value if spec.data else None
    return {"source": source, "synthetic": spec.data is DataSource.SYNTHETIC}


class Lifecycle:
    def __init__(self, store: Store, events: EventLog | None = None,
                 workloads: Workloads | None = None) -> None:
        self.store = store
        self.events = events
        self.workloads = workloads
        self._writes = RunStatusWrites(store)

    # -- the API and the reconciler --------------------------------------------------
    def enqueued(self, runs: Iterable[Run]) -> None:
        """Runs just stored (a POST, a batch, a schedule's fire): announced `queued`,
        their workloads created suspended for the controller to admit. When a create
        fails the controller is told at once (store.tell_controller) and makes the
        workload itself; its resync would find the run all the same."""
        missing = []
        for run in runs:
            self._status(run.id, RunStatus.QUEUED, run.status_reason)
            if self.workloads is None:
                continue
            try:
                self.workloads.submit(run)
            except Exception as exc:
                log.warning("run %d: workload not created (%s); telling the controller",
                            run.id, exc)
                missing.append(run.id)
        if missing:
            try:
                self.store.tell_controller(missing)
            except Exception as exc:  # its next resync finds them all the same
                log.warning("runs %s: controller not told (%s)", missing, exc)

    def admit(self, per_user_limit: int, global_limit: int, *, skip: Collection[int] = (),
              spend: DailyLimit | None = None) -> list[Run]:
        """Admit queued runs within the limits (one store transaction), announced."""
        admitted = self._writes.admit_queued(per_user_limit, global_limit, skip=skip,
                                             spend=spend)
        if admitted and self.events is not None:
            try:  # one round trip for the pass, not one per run
                self.events.append_each([(run.id, EventType.STATUS,
                                          status_data(RunStatus.ADMITTED, None))
                                         for run in admitted])
            except Exception as exc:  # the database has them; the live view may miss them
                log.warning("%d admitted events not appended: %s", len(admitted), exc)
        return admitted

    def note(self, run_id: int, status: RunStatus, reason: str | None) -> None:
        """Why a run is as it is (waiting for a quota, fetching bars), while it stays
        in `status`; None clears it."""
        self._writes.note_status(run_id, status, reason)

    def request_stop(self, run: Run, reason: str = "stop requested") -> Run:
        """Idempotent: a queued run stops at once (no runner ever starts); an active one
        goes to `stopping` and its workload is deleted, so the runner gets SIGTERM and
        saves its partial result. Someone asked: only then is a run `stopped`."""
        if run.status.is_terminal:
            return run
        try:
            if run.status is RunStatus.QUEUED:
                stopped = self.finish(run, RunStatus.STOPPED, "stopped before it started")
                run = stopped or self.store.get_run(run.id)
            elif run.status is not RunStatus.STOPPING:
                run = self._writes.transition(run.id, RunStatus.STOPPING, reason=reason)
                self._status(run.id, RunStatus.STOPPING, run.status_reason)
        except IllegalTransition:
            run = self.store.get_run(run.id)  # it moved meanwhile; the state machine decided
        self._stop_workload(run.id)
        return run

    def mark_stopping(self, run: Run, why: str) -> bool:
        """The workload was deleted by someone (kubectl delete job): that is a stop, so
        the runner that gets SIGTERM saves its result instead of waiting for a retry."""
        try:
            stopping = self._writes.transition(run.id, RunStatus.STOPPING,
                                               reason=f"stopped: {why}")
        except IllegalTransition:
            return False
        self._status(run.id, RunStatus.STOPPING, stopping.status_reason)
        return True

    # -- the runner ------------------------------------------------------------------
    def start(self, run_id: int, *, decider: str, decider_reason: str | None = None,
              publish: Publish | None = None, details: Mapping[str, Any] | None = None
              ) -> Run:
        """A runner takes the run: running (or still stopping), attempts + 1, announced
        with its decider and `details`. Its attempt fences its writes."""
        run = self._writes.start_attempt(run_id, decider=decider, decider_reason=decider_reason)
        self._status(run.id, run.status, run.status_reason, publish, {
            "attempt": run.attempts, "decider": decider, "decider_reason": decider_reason,
            **(details or {})})
        return run

    # -- everyone --------------------------------------------------------------------
    def finish(self, run: Run, status: RunStatus, reason: str | None, *,
               result: dict[str, Any] | None = None, attempt: int | None = None,
               publish: Publish | None = None) -> Run | None:
        """Move the run to a final status with its result (from the ledger when none is
        given), then tell its followers. None when it was final already (whoever got
        there first wrote the one result). Superseded when `attempt` was overtaken."""
        if result is None:
            result = run_result(self.store, run, status.value, from_ledger=True)
        try:
            final = self._writes.transition(run.id, status, reason=reason, result=result,
                                            attempt=attempt)
        except IllegalTransition:
            return None
        self._announce(run.id, status, final.status_reason, result, publish)
        return final

    # -- internals -------------------------------------------------------------------
    def _status(self, run_id: int, status: RunStatus, reason: str | None,
                publish: Publish | None = None, details: Mapping[str, Any] | None = None
                ) -> None:
        """The change's `status` event; the database has the change if the live view
        cannot take it now (Redis down)."""
        try:
            (publish or self._append(run_id))(EventType.STATUS,
                                              status_data(status, reason, details))
        except Exception as exc:
            log.warning("run %d: %s event not appended: %s", run_id, status.value, exc)

    def _announce(self, run_id: int, status: RunStatus, reason: str | None,
                  result: dict[str, Any], publish: Publish | None) -> None:
        try:
            emit = publish or self._append(run_id)
            emit(EventType.STATUS, status_data(status, reason))
            emit(EventType.RESULT, result_data(status, reason, result))
            if publish is None and self.events is not None:
                self.events.finish(run_id)
        except Exception as exc:  # the database has it; the live view may miss it
            log.warning("run %d: final events not appended: %s", run_id, exc)

    def _append(self, run_id: int) -> Publish:
        def append(type: EventType, data: dict[str, Any]) -> None:
            if self.events is not None:
                self.events.append(run_id, type, data)
        return append

    def _stop_workload(self, run_id: int) -> None:
        if self.workloads is None:
            return
        try:
            self.workloads.stop(run_id)
        except Exception as exc:  # the reconciler stops `stopping` runs it sees alive
            log.warning("run %d: workload not deleted yet (%s); the reconciler retries",
                        run_id, exc)
