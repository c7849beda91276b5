"""Finalize a run whose runner could not: status, reason and a result from the ledger."""

from __future__ import annotations

import logging
from decimal import Decimal

from core.errors import IllegalTransition
from core.eventlog import EventLog, EventType
from core.performance import ledger_result, periods_per_year
from core.records import Run
from core.status import RunStatus
from core.store import Store

log = logging.getLogger(__name__)


def result_from_ledger(store: Store, run: Run, ending: str) -> dict[str, object]:
    """The whole ledger, read once, a keyset page at a time: one equity value per
    completed step is kept, the trades are only tallied as they stream by. No completed
    step is an empty curve (steps_done 0; the result is the initial cash)."""
    equity: list[Decimal] = [d.equity for d in store.iter_decisions(run.id)
                             if d.completed and d.equity is not None]
    return ledger_result(run.spec.initial_cash, equity, store.iter_trades(run.id),
                         periods_per_year(run.spec.mode.value),
                         steps_total=run.steps_total, ending=ending)


def finalize(store: Store, events: EventLog, run: Run, status: RunStatus,
             reason: str) -> Run | None:
    """Move the run to a final status; None if the runner got there first."""
    result = result_from_ledger(store, run, status.value)
    try:
        final = store.transition(run.id, status, reason=reason, result=result)
    except IllegalTransition:
        return None
    log.warning("run %d finalized as %s: %s", run.id, status.value, reason)
    try:
        events.append(run.id, EventType.STATUS, {"status": status.value, "reason": reason})
        events.append(run.id, EventType.RESULT,
                      {"status": status.value, "reason": reason, "result": result})
        events.finish(run.id)
    except Exception as exc:  # the database has it; the live view may miss it
        log.warning("run %d: final event not appended: %s", run.id, exc)
    return final
