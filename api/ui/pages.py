"""The console's pages (GET): runs, a run, a batch, a schedule; and what their scripts
read (a page of run rows, a run's chart, a run's event stream). Each reads through the
same store calls and schemas as its /v1 twin, for the caller only: another user's run
is a 404 page."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sse_starlette import EventSourceResponse

from api.deps import ServicesDep
from api.routes import compare, events, schedules
from api.routes.runs import _outs as run_outs
from api.schemas import DecisionOut, RunOut
from api.services import Services
from api.ui.chart import chart_data, equity_curves
from api.ui.render import page
from api.ui.runview import LIMIT, ledger_of, run_view
from api.ui.session import Viewer
from core.errors import NotFound
from core.eventlog import EVENT_ID_PATTERN
from core.records import Run
from core.status import RunStatus
from core.store import RunFilter

router = APIRouter(prefix="/ui", include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
OptionalId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
PAGE = 50
CURVES = 40  # equity curves drawn on a batch's page, best ranked first


class PageMissing(Exception):
    """A 404 page: no such thing, or someone else's."""


def owned_run(svc: Services, run_id: int, user_id: str) -> Run:
    try:
        return svc.store.get_run(run_id, user_id)
    except NotFound as exc:
        raise PageMissing(f"run {run_id}") from exc


def _filters(status: RunStatus | None, model_id: int | None, batch_id: int | None,
             schedule_id: int | None, before: int | None) -> RunFilter:
    return RunFilter(status=status, model_id=model_id, batch_id=batch_id,
                     schedule_id=schedule_id, before_id=before, limit=PAGE + 1)


def _rows(svc: Services, user_id: str, flt: RunFilter) -> tuple[list[RunOut], int | None]:
    found = svc.store.list_runs(user_id, flt)
    more = found[PAGE - 1].id if len(found) > PAGE else None
    return run_outs(svc, found[:PAGE]), more


@router.get("", response_class=HTMLResponse)
def runs_page(request: Request, who: Viewer, svc: ServicesDep,
              status: RunStatus | None = None, model_id: OptionalId = None,
              batch_id: OptionalId = None, schedule_id: OptionalId = None,
              before: OptionalId = None, stopped: int | None = None) -> HTMLResponse:
    """The caller's runs, newest first, with filters; the page keeps them live."""
    flt = _filters(status, model_id, batch_id, schedule_id, before)
    rows, more = _rows(svc, who.user_id, flt)
    models = svc.store.list_models(who.user_id)
    filters = {"status": status.value if status else "", "model_id": model_id or "",
               "batch_id": batch_id or "", "schedule_id": schedule_id or ""}
    query = urlencode({k: v for k, v in filters.items() if v})
    return page(request, "runs.html", runs=rows, more=more, models=models, query=query,
                filters=filters, statuses=[s.value for s in RunStatus], stopped=stopped)


@router.get("/runs.json")
def runs_rows(who: Viewer, svc: ServicesDep, status: RunStatus | None = None,
              model_id: OptionalId = None, batch_id: OptionalId = None,
              schedule_id: OptionalId = None, before: OptionalId = None) -> JSONResponse:
    """The rows of the runs page as JSON: what its script refreshes."""
    rows, _ = _rows(svc, who.user_id, _filters(status, model_id, batch_id, schedule_id, before))
    return JSONResponse([_row(r) for r in rows], headers={"Cache-Control": "no-store"})


def _row(r: RunOut) -> dict[str, Any]:
    return {"id": r.id, "status": r.status.value, "final": r.status.is_terminal,
            "reason": r.status_reason, "step": r.progress.step, "total": r.progress.total,
            "equity": None if r.progress.equity is None else str(r.progress.equity)}


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: Id, who: Viewer, svc: ServicesDep) -> HTMLResponse:
    view = run_view(svc, owned_run(svc, run_id, who.user_id))
    return page(request, "run.html", view=view, run=view.run, limit=LIMIT)


@router.get("/runs/{run_id}/chart.json")
def run_chart(run_id: Id, who: Viewer, svc: ServicesDep) -> JSONResponse:
    run = owned_run(svc, run_id, who.user_id)
    data = chart_data(run, svc.store, svc.store.list_decisions(run.id, limit=LIMIT),
                      svc.store.list_trades(run.id, limit=LIMIT))
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/ledger", response_class=HTMLResponse)
def run_ledger(request: Request, run_id: Id, who: Viewer, svc: ServicesDep) -> HTMLResponse:
    """The run page's orders and positions, rendered alone: its script swaps them in
    as orders change."""
    ledger = ledger_of(svc, owned_run(svc, run_id, who.user_id))
    return page(request, "_ledger.html", ledger=ledger)


@router.get("/runs/{run_id}/decisions/{step}.json")
def run_decision(run_id: Id, step: Annotated[int, Path(ge=0, le=10_000_000)], who: Viewer,
                 svc: ServicesDep) -> JSONResponse:
    """One decision as GET /v1/runs/{id}/decisions has it: what a timeline entry made
    from the stream (which names the tools only) reads when its tool calls are opened."""
    owned_run(svc, run_id, who.user_id)
    decision = svc.store.get_decision(run_id, step)
    if decision is None:
        raise PageMissing(f"decision {step} of run {run_id}")
    return JSONResponse(DecisionOut.of(decision).model_dump(mode="json"),
                        headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse)
async def run_events(run_id: Id, who: Viewer, svc: ServicesDep,
                     last_event_id: Annotated[str | None, Header(
                         alias="Last-Event-ID", pattern=EVENT_ID_PATTERN)] = None,
                     after: Annotated[str | None, Query(pattern=EVENT_ID_PATTERN)] = None,
                     ) -> EventSourceResponse:
    """GET /v1/runs/{id}/events itself, for a browser's EventSource (which sends the
    cookie, not a header, and resumes with Last-Event-ID on its own)."""
    await asyncio.to_thread(owned_run, svc, run_id, who.user_id)
    return await events.run_events(run_id, who, svc, last_event_id=last_event_id, after=after)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: Id, who: Viewer, svc: ServicesDep) -> HTMLResponse:
    try:
        table = compare.compare_batch(batch_id, who, svc)
    except NotFound as exc:
        raise PageMissing(f"batch {batch_id}") from exc
    counted = [(r.run_id, r.player) for r in table.rows if r.counted]
    return page(request, "batch.html", table=table,
                curves=equity_curves(svc.store, counted, most=CURVES), most=CURVES)


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
def schedule_page(request: Request, schedule_id: Id, who: Viewer,
                  svc: ServicesDep) -> HTMLResponse:
    try:
        schedule = schedules.get_schedule(schedule_id, who, svc)
    except NotFound as exc:
        raise PageMissing(f"schedule {schedule_id}") from exc
    return page(request, "schedule.html", schedule=schedule)
