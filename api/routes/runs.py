"""/v1/runs: create, list, read, stop, delete; and a run's records."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem, problems
from api.idempotency import IdempotencyKey, mark_replayed, request_hash
from api.paging import CursorQuery, decode_cursor, keyset_page
from api.schemas import (
    AuditOut,
    DecisionOut,
    OrderDetailOut,
    OrderOut,
    PositionOut,
    ResultOut,
    RunCreate,
    RunOut,
    RunPage,
    StopAllOut,
    TradeOut,
)
from api.services import Services
from core.errors import NotFound
from core.marketdata.resolve import resolve_data_source
from core.marketdata.sessions import new_york_date
from core.records import OrderState, Run, TradeStatus
from core.research.audit import LookaheadAudit
from core.spec import DeciderKind, Mode, RunSpec, replay_mismatch
from core.status import RunStatus
from core.store import RunFilter

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problems(401))

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Run id")]
Limit = Annotated[int, Query(ge=1, le=500)]


def _out(svc: Services, run: Run) -> RunOut:
    live: dict[str, Any] = {}
    if not run.status.is_terminal:
        try:
            live = svc.events.get_progress(run.id)
        except Exception as exc:  # the live view is optional; the store is the record
            log.warning("progress of run %d unavailable: %s", run.id, exc)
    return RunOut.of(run, live)


def _outs(svc: Services, runs: list[Run]) -> list[RunOut]:
    """A page of runs with the live progress of those not final, read in one batch."""
    live: dict[int, dict[str, Any]] = {}
    if active := _active(runs):
        try:
            live = svc.events.get_progress_many(active)
        except Exception as exc:  # the live view is optional; the store is the record
            _progress_unavailable(active, exc)
    return _documents(runs, live)


async def _live_outs(svc: Services, runs: list[Run]) -> list[RunOut]:
    """`_outs` on the event loop: the hot GET routes read without a thread hop."""
    live: dict[int, dict[str, Any]] = {}
    if active := _active(runs):
        try:
            live = await svc.progress_reads.get_progress_many(active)
        except Exception as exc:  # the live view is optional; the store is the record
            _progress_unavailable(active, exc)
    return _documents(runs, live)


def _active(runs: list[Run]) -> list[int]:
    """The runs that may have a live view: not ended, and started by a runner at least
    once (a runner publishes progress only after its start counts the attempt)."""
    return [r.id for r in runs if not r.status.is_terminal and r.attempts > 0]


def _progress_unavailable(run_ids: list[int], exc: Exception) -> None:
    log.warning("progress of %d runs unavailable: %s", len(run_ids), exc)


def _documents(runs: list[Run], live: dict[int, dict[str, Any]]) -> list[RunOut]:
    return [RunOut.of(run, live.get(run.id, {})) for run in runs]


@router.post("", status_code=201, response_model=RunOut, responses={
    200: {"model": RunOut, "description": "Replay of an earlier request (same key)"},
    **problems(400, 409, 413, 422, why={
        409: "The Idempotency-Key was used with another body",
        422: "The body does not validate (`errors` lists each problem), or the spec cannot "
             "be played: not a session, in the future, an unknown model or replay source "
             "(or one with other symbols, dates or data source), "
             "or no market data: `data` unset with neither cached bars nor a configured "
             "provider"})})
def create_run(body: RunCreate, who: CallerDep, svc: ServicesDep, response: Response,
               idempotency_key: IdempotencyKey = None) -> RunOut:
    """Queue a run; its workload is created suspended and admitted within the limits.

    A body the schema allows can still be refused (422) for what no schema can say: a
    date that is no XNYS session or is in the future, a range without a session, a model
    or replay source that is not the caller's (or replays other symbols, dates or data),
    or no market data for the run (`data` unset, no cached bars, no provider)."""
    spec = playable_spec(svc, body.spec(), body.model_id, who.user_id, check_model=False)
    try:  # the model is checked in the insert's transaction
        run, created = svc.store.create_run(
            who.user_id, body.model_id, spec, spec.step_count(),
            idempotency_key=idempotency_key, request_hash=request_hash(
                # the spec as stored, and the model: the same for either request class
                {**body.spec().model_dump(mode="json"), "model_id": body.model_id}))
    except NotFound as exc:
        raise ApiProblem(422, f"model_id: model {body.model_id} not found") from exc
    if not created:
        mark_replayed(response)
        return _out(svc, run)
    svc.lifecycle.enqueued([run])
    svc.wake_controller()
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunOut.of(run, {})  # just made: no progress to read yet


def playable_spec(svc: Services, spec: RunSpec, model_id: int, user_id: str, *,
                  at: dt.datetime | None = None, check_model: bool = True) -> RunSpec:
    """Every check a run passes before it is stored (here, in a batch, and a schedule's
    next run as of its fire time `at`): a session that can be played, a data source
    that can serve it (the spec names it), the caller's model, a replay's source.
    InvalidSpec or a 422 ApiProblem when it fails. `check_model=False`: the caller's
    own transaction checks the model (a POST inserts the run in the same one)."""
    spec.check_playable(None if at is None else new_york_date(at), now=at)
    spec = resolve_data_source(spec, svc.store, svc.market_data, now=at)
    if check_model:
        try:
            svc.store.get_model(model_id, user_id)
        except NotFound as exc:
            raise ApiProblem(422, f"model_id: model {model_id} not found") from exc
    if spec.decider is DeciderKind.REPLAY:
        _check_replay_source(svc, spec, user_id)
    return spec


def _check_replay_source(svc: Services, spec: RunSpec, user_id: str) -> None:
    source = spec.decider_params.get("source_run_id")
    if not isinstance(source, int) or isinstance(source, bool) or source < 1:
        raise ApiProblem(422, "decider_params.source_run_id must be a run id")
    try:
        recorded = svc.store.get_run(source, user_id)
    except NotFound as exc:
        raise ApiProblem(422, f"decider_params.source_run_id: run {source} not found") from exc
    # Refused now rather than by the runner: the same check, before a Job is made.
    if mismatch := replay_mismatch(recorded.spec, spec):
        raise ApiProblem(422, f"decider_params.source_run_id: run {source} {mismatch}")


@router.get("", response_model=RunPage, responses=problems(400, 422))
async def list_runs(who: CallerDep, svc: ServicesDep,
              status_: Annotated[RunStatus | None, Query(alias="status")] = None,
              symbol: Annotated[str | None, Query(pattern=r"^[A-Za-z.\-]{1,12}$")] = None,
              model_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
              mode: Mode | None = None, cursor: CursorQuery = None,
              limit: Limit = 50,
              batch_id: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                                    description="A batch's runs")] = None,
              schedule_id: Annotated[int | None, Query(
                  ge=1, le=2**63 - 1, description="The runs a schedule fired")] = None,
              ) -> RunPage:
    """The caller's runs, newest first."""
    flt = run_filter(status=status_, symbol=symbol, model_id=model_id, mode=mode,
                     cursor=cursor, limit=limit, batch_id=batch_id, schedule_id=schedule_id)
    runs, next_cursor = keyset_page(await svc.run_reads.list_runs(who.user_id, flt), limit,
                                    lambda r: r.id)
    return RunPage(items=await _live_outs(svc, runs), next_cursor=next_cursor)


def run_filter(*, status: RunStatus | None, symbol: str | None, model_id: int | None,
               mode: Mode | None, cursor: str | None, limit: int, batch_id: int | None,
               schedule_id: int | None) -> RunFilter:
    """GET /v1/runs's query as the store's filter (one more row: is there a next page)."""
    return RunFilter(status=status, symbol=symbol.upper() if symbol else None,
                     model_id=model_id, mode=mode.value if mode else None,
                     before_id=decode_cursor(cursor), limit=limit + 1, batch_id=batch_id,
                     schedule_id=schedule_id)


def runs_page(svc: Services, user_id: str, flt: RunFilter) -> RunPage:
    """GET /v1/runs's page from a worker thread (the console's pages)."""
    runs, next_cursor = keyset_page(svc.store.list_runs(user_id, flt), flt.limit - 1,
                                    lambda r: r.id)
    return RunPage(items=_outs(svc, runs), next_cursor=next_cursor)


def run_out(svc: Services, run: Run) -> RunOut:
    """GET /v1/runs/{id}'s document from a worker thread (the console's pages)."""
    return _out(svc, run)


@router.post("/stop-all", status_code=202, response_model=StopAllOut)
def stop_all(who: CallerDep, svc: ServicesDep) -> StopAllOut:
    """Kill switch: ask every queued or active run of the caller to stop."""
    stopping = []
    for run in svc.store.list_runs(who.user_id, RunFilter(limit=100_000)):
        if not run.status.is_terminal:
            request_stop(svc, run)
            stopping.append(run.id)
    return StopAllOut(stopping=stopping)


ONE_RUN = problems(404, 422)


@router.api_route("/stop-all", methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
def stop_all_is_post_only() -> None:
    """Without this, GET or DELETE /v1/runs/stop-all would reach the /{run_id} routes
    and answer 422 about a run id, where the truth is 405: stop-all only takes POST."""
    raise StarletteHTTPException(405)


@router.get("/{run_id}", response_model=RunOut, responses=ONE_RUN)
async def get_run(run_id: RunId, who: CallerDep, svc: ServicesDep) -> RunOut:
    run = await svc.run_reads.get_run(run_id, who.user_id)
    return (await _live_outs(svc, [run]))[0]


def request_stop(svc: Services, run: Run) -> Run:
    """Idempotent, through the run's lifecycle; the controller hears of it at once."""
    run = svc.lifecycle.request_stop(run)
    svc.wake_controller()
    return run


@router.post("/{run_id}/stop", status_code=202, response_model=RunOut, responses=ONE_RUN)
def stop_run(run_id: RunId, who: CallerDep, svc: ServicesDep) -> RunOut:
    """Stop a run; partial results are saved. Stopping a finished run changes nothing."""
    run = request_stop(svc, svc.store.get_run(run_id, who.user_id))
    return _out(svc, run)


@router.delete("/{run_id}", status_code=204, response_class=Response,
               responses=problems(404, 409, 422, why={
                   409: "Still stopping; retry the delete after Retry-After seconds"}))
async def delete_run(run_id: RunId, who: CallerDep, svc: ServicesDep) -> Response:
    """Stop the run if needed, then remove it with its trades, decisions and events."""
    run = await asyncio.to_thread(svc.store.get_run, run_id, who.user_id)
    if not run.status.is_terminal:
        await asyncio.to_thread(request_stop, svc, run)
        run = await _wait_final(svc, run_id, svc.settings.delete_wait_seconds)
        if not run.status.is_terminal:
            raise ApiProblem(409, f"run {run_id} is still stopping; retry the delete",
                             headers={"Retry-After": "5"})
    await asyncio.to_thread(svc.store.delete_run, run_id, who.user_id)
    try:
        await asyncio.to_thread(svc.events.delete, run_id)
    except Exception as exc:
        log.warning("events of run %d not deleted: %s", run_id, exc)
    svc.executor.forget(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _wait_final(svc: Services, run_id: int, seconds: float) -> Run:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        run = await asyncio.to_thread(svc.store.get_run, run_id)
        if run.status.is_terminal or loop.time() >= deadline:
            return run
        await asyncio.sleep(0.2)


@router.get("/{run_id}/trades", response_model=list[TradeOut], responses=ONE_RUN)
def list_trades(run_id: RunId, who: CallerDep, svc: ServicesDep,
                status_: Annotated[TradeStatus | None, Query(alias="status")] = None,
                after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[TradeOut]:
    """Filled and refused trades (a refusal carries its reason), oldest first. Keyset
    pages: pass the last id seen as after_id; `status` filters before the limit, so a
    page holds up to `limit` trades of that status however many others there are."""
    svc.store.get_run(run_id, who.user_id)
    trades = svc.store.list_trades(run_id, after_id=after_id, limit=limit, status=status_)
    return [TradeOut.of(t) for t in trades]


@router.get("/{run_id}/orders", response_model=list[OrderOut], responses=ONE_RUN)
def list_orders(run_id: RunId, who: CallerDep, svc: ServicesDep,
                state: Annotated[OrderState | None, Query(
                    description="Only orders in this state: open, filled, cancelled, "
                                "expired or refused")] = None,
                after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[OrderOut]:
    """Every order of the run, oldest first: market orders (filled or refused at once),
    limit, stop and stop-limit orders (open until filled, cancelled or expired), and the
    engine's own (stop-losses, margin calls, flat at the close). Keyset pages: pass the
    last id seen as after_id; `state` filters before the limit."""
    svc.store.get_run(run_id, who.user_id)
    orders = svc.store.list_orders(run_id, state=state, after_id=after_id, limit=limit)
    return [OrderOut.of(o) for o in orders]


@router.get("/{run_id}/orders/{order_id}", response_model=OrderDetailOut, responses=ONE_RUN)
def get_order(run_id: RunId, who: CallerDep, svc: ServicesDep,
              order_id: Annotated[int, Path(ge=1, le=2**63 - 1,
                                            description="Order id")]) -> OrderDetailOut:
    """One order of the run with its state changes: placed, triggered, filled,
    cancelled, expired, refused."""
    svc.store.get_run(run_id, who.user_id)
    found = svc.store.list_orders(run_id, ids=[order_id], limit=1)
    if not found:
        raise NotFound(f"run {run_id} has no order {order_id}")
    events = svc.store.list_order_events(run_id, order_id=order_id)
    return OrderDetailOut.with_events(found[0], events)


@router.get("/{run_id}/positions", response_model=list[PositionOut], responses=ONE_RUN)
def list_positions(run_id: RunId, who: CallerDep, svc: ServicesDep,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[PositionOut]:
    """The portfolio after every filled trade."""
    svc.store.get_run(run_id, who.user_id)
    return [PositionOut.of(p) for p in svc.store.list_positions(run_id, limit=limit)]


@router.get("/{run_id}/decisions", response_model=list[DecisionOut], responses=ONE_RUN)
def list_decisions(run_id: RunId, who: CallerDep, svc: ServicesDep,
                   after_step: Annotated[int, Query(ge=-1, le=10_000_000)] = -1,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[DecisionOut]:
    """Every step's decision with its reasoning, tool calls, latency and tokens."""
    svc.store.get_run(run_id, who.user_id)
    decisions = svc.store.list_decisions(run_id, after_step=after_step, limit=limit)
    return [DecisionOut.of(d) for d in decisions]


@router.get("/{run_id}/audit", response_model=AuditOut, responses=ONE_RUN)
def audit_run(run_id: RunId, who: CallerDep, svc: ServicesDep) -> AuditOut:
    """The look-ahead audit: every dated item a research tool answered (news, filings,
    corporate actions) with the instant it became knowable against the end of the bar
    decided on, and every call to an outside tool that does not answer as of the bar.
    `lookahead` is `clean`, `N items` (answered before they were known) or `possible`."""
    run = svc.store.get_run(run_id, who.user_id)
    audit = LookaheadAudit.of(run.spec.interval, svc.store.iter_decisions(run.id))
    return AuditOut(run_id=run.id, **audit.report())


@router.get("/{run_id}/result", response_model=ResultOut, responses=ONE_RUN)
def get_result(run_id: RunId, who: CallerDep, svc: ServicesDep) -> ResultOut:
    run = svc.store.get_run(run_id, who.user_id)
    return ResultOut(run_id=run.id, status=run.status, status_reason=run.status_reason,
                     result=run.result)
