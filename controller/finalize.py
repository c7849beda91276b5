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
    decisions = store.list_decisions(run.id, limit=1_000_000)
    equity = [d.equity for d in decisions if d.completed and d.equity is not None]
    trades = store.list_trades(run.id, limit=1_000_000)
    curve: list[Decimal] = equity or [run.spec.initial_cash]
    return ledger_result(run.spec.initial_cash, curve, trades,
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
