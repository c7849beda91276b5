"""The console's pages (GET): runs, a run, a batch, a schedule; and what their scripts
read (a page of run rows, a run's chart, a run's event stream). Each reads through the
same store calls and schemas as its /v1 twin, for the caller only: another user's run
is a 404 page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sse_starlette import EventSourceResponse

from api.auth import Caller
from api.deps import ServicesDep
from api.routes import compare, events, runs, schedules
from api.schemas import DecisionOut, RunOut, RunPage
from api.services import Services
from api.ui.chart import chart_data, equity_curves
from api.ui.render import page
from api.ui.runview import LIMIT, ledger_of, run_view
from api.ui.session import Viewer
from core.errors import NotFound
from core.eventlog import EVENT_ID_PATTERN
from core.records import Run
from core.status import RunStatus

router = APIRouter(prefix="/ui", include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
PAGE = 50
CURVES = 40  # equity curves drawn on a batch's page, best ranked first


class PageMissing(Exception):
    """A 404 page: no such thing, or someone else's."""


def owned_run(svc: Services, run_id: int, user_id: str) -> Run:
    try:
        return svc.store.get_run(run_id, user_id)
    except NotFound as exc:
        raise PageMissing(f"run {run_id}") from exc


def _page(svc: Services, who: Caller, f: Filters) -> RunPage:
    """GET /v1/runs itself: the same filters, the same keyset pages, the same rows."""
    return runs.runs_page(svc, who.user_id, runs.run_filter(
        status=f.status, symbol=None, model_id=f.model_id, mode=None, cursor=f.cursor,
        limit=PAGE, batch_id=f.batch_id, schedule_id=f.schedule_id))


@dataclass(frozen=True)
class Filters:
    status: RunStatus | None = None
    model_id: int | None = None
    batch_id: int | None = None
    schedule_id: int | None = None
    cursor: str | None = None

    def query(self) -> str:
        """The filters (not the page) as a query string."""
        return urlencode({k: v for k, v in (
            ("status", self.status.value if self.status else None), ("model_id", self.model_id),
            ("batch_id", self.batch_id), ("schedule_id", self.schedule_id)) if v})


def _id(value: str) -> int | None:
    return int(value) if value.isdigit() and 0 < int(value) < 2**63 else None


def filters(status: str = "", model_id: str = "", batch_id: str = "", schedule_id: str = "",
            cursor: str = "") -> Filters:
    """A form's filters: a blank (or nonsense) field means any."""
    known = {s.value for s in RunStatus}
    return Filters(status=RunStatus(status) if status in known else None,
                   model_id=_id(model_id), batch_id=_id(batch_id),
                   schedule_id=_id(schedule_id), cursor=cursor or None)


FiltersDep = Annotated[Filters, Depends(filters)]


@router.get("", response_class=HTMLResponse)
def runs_page(request: Request, who: Viewer, svc: ServicesDep, filters: FiltersDep,
              stopped: int | None = None) -> HTMLResponse:
    """The caller's runs, newest first, with filters; the page keeps them live."""
    found = _page(svc, who, filters)
    models = svc.store.list_models(who.user_id, limit=200)
    return page(request, "runs.html", runs=found.items, more=found.next_cursor, models=models,
                query=filters.query(), filters=filters,
                statuses=[s.value for s in RunStatus], stopped=stopped)


@router.get("/runs.json")
def runs_rows(who: Viewer, svc: ServicesDep, filters: FiltersDep) -> JSONResponse:
    """The rows of the runs page as JSON: what its script refreshes."""
    rows = _page(svc, who, filters).items
    return JSONResponse([_row(r) for r in rows], headers={"Cache-Control": "no-store"})


def _row(r: RunOut) -> dict[str, Any]:
    return {"id": r.id, "status": r.status.value, "final": r.status.is_terminal,
            "reason": r.status_reason, "step": r.progress.step, "total": r.progress.total,
            "equity": None if r.progress.equity is None else str(r.progress.equity)}


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: Id, who: Viewer, svc: ServicesDep) -> HTMLResponse:
    run = owned_run(svc, run_id, who.user_id)
    view = run_view(svc, run, runs.run_out(svc, run))
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
