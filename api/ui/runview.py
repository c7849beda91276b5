"""What the run page shows, read through the store and the /v1 schemas, so each figure
is the one the JSON API serves for the same run."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from api.schemas import DecisionOut, OrderOut, RunOut, TradeOut
from api.services import Services
from api.ui.chart import chart_data
from core.records import Portfolio, Run, TradeStatus

log = logging.getLogger(__name__)
LIMIT = 5000  # the most a /v1 page of decisions, trades or orders holds


@dataclass(frozen=True)
class Ledger:
    orders: list[OrderOut]
    portfolio: Portfolio  # cash and holdings now (GET /v1/runs/{id}/positions: each)


@dataclass(frozen=True)
class RunView:
    run: RunOut
    decisions: list[DecisionOut]
    refusals: dict[int, list[TradeOut]]  # by step
    fills: dict[int, list[TradeOut]]  # by step
    ledger: Ledger
    chart: dict[str, Any]
    after: str | None  # the event the live stream starts after
    truncated: bool


def last_event_id(svc: Services, run_id: int) -> str | None:
    """Read before the records: events after it may repeat what the page shows (the
    browser keys rows by step and trade), but none is missed."""
    try:
        return svc.events.last_id(run_id)
    except Exception as exc:  # the live view is optional: then the stream replays all
        log.warning("run %d: last event id unavailable (%s)", run_id, exc)
        return None


def ledger_of(svc: Services, run: Run) -> Ledger:
    """Its orders and its positions now: what the page re-reads as orders change."""
    orders = svc.store.list_orders(run.id, limit=LIMIT)
    return Ledger([OrderOut.of(o) for o in orders], svc.store.get_portfolio(run.id))


def run_view(svc: Services, run: Run, out: RunOut) -> RunView:
    """`out` is the run as GET /v1/runs/{id} answers it (with its live progress)."""
    after = last_event_id(svc, run.id)
    store = svc.store
    decisions = store.list_decisions(run.id, limit=LIMIT)
    trades = store.list_trades(run.id, limit=LIMIT)
    refusals: dict[int, list[TradeOut]] = defaultdict(list)
    fills: dict[int, list[TradeOut]] = defaultdict(list)
    for t in trades:
        (refusals if t.status is TradeStatus.REFUSED else fills)[t.step].append(TradeOut.of(t))
    return RunView(
        run=out, decisions=[DecisionOut.of(d) for d in decisions],
        refusals=dict(refusals), fills=dict(fills),
        ledger=ledger_of(svc, run),
        chart=chart_data(run, store, decisions, trades), after=after,
        truncated=len(decisions) >= LIMIT or len(trades) >= LIMIT)
