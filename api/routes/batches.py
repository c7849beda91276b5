"""/v1/batches: the runs of a matrix made in one request, followed and stopped as one
(api/routes/compare.py compares them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import ValidationError

from api.batch_schemas import BatchCreate, BatchOut, BatchPage, BatchProgress
from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem, first_problem, problems
from api.idempotency import IdempotencyKey, mark_replayed, request_hash
from api.paging import CursorQuery, decode_cursor, keyset_page
from api.routes.runs import playable_spec, request_stop
from api.schemas import StopAllOut
from api.services import Services
from core.errors import InvalidSpec
from core.records import Batch, Run
from core.store import BatchRun, RunFilter

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=problems(401))

BatchId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Batch id")]
ONE_BATCH = problems(404, 422)
ALL = 100_000


def _runs(svc: Services, batch: Batch) -> list[Run]:
    """The batch's runs in matrix order (they were inserted in it)."""
    runs = svc.store.list_runs(batch.user_id, RunFilter(batch_id=batch.id, limit=ALL))
    return sorted(runs, key=lambda r: r.id)


def _out(batch: Batch, runs: Sequence[Run]) -> BatchOut:
    counts: dict[Any, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return BatchOut(id=batch.id, name=batch.name, created_at=batch.created_at,
                    template=batch.template, runs=len(runs),
                    finished=all(r.status.is_terminal for r in runs), counts=counts,
                    progress=BatchProgress(steps_done=sum(r.steps_done for r in runs),
                                           steps_total=sum(r.steps_total for r in runs)),
                    run_ids=[r.id for r in runs])


@router.post("", status_code=201, response_model=BatchOut, responses={
    200: {"model": BatchOut, "description": "Replay of an earlier request (same key)"},
    **problems(400, 409, 413, 422, why={
        409: "The Idempotency-Key was used with another body",
        422: "The body does not validate, the matrix is over the run cap, or one of its "
             "runs could not be played (the detail names it, as POST /v1/runs would "
             "refuse it): nothing is stored"})})
def create_batch(body: BatchCreate, who: CallerDep, svc: ServicesDep, response: Response,
                 idempotency_key: IdempotencyKey = None) -> BatchOut:
    """Queue every run of the matrix at once, or none: each is checked as POST /v1/runs
    checks a run, then all are stored in one transaction; their workloads are created
    suspended and admitted within the same per-user and global limits as any run.

    Each cell (model x symbol x date or range) is played `repeats` times: repeat k has
    seed `seed + k` and `repeat: k` in its spec. With `baselines` (the default),
    buy_and_hold, sma_crossover and random also play once on every symbol and date or
    range, with the batch's seed and options, as runs of the first model whose spec says
    `baseline: true`. `run_ids` lists the models' runs (model, symbol, date or range,
    repeat), then the baselines.

    A body the schema allows can still be refused (422) for what no schema can say: a
    batch over the run cap (models x symbols x dates or ranges x repeats, plus three
    baselines per symbol and date or range), a `seed + repeats - 1` over the largest
    seed, or a run that POST /v1/runs would refuse (no session, a future date, a model
    that is not the caller's)."""
    cells = []
    for cell in body.cells():
        try:
            spec = playable_spec(svc, body.spec_of(cell), cell.model_id, who.user_id)
        except ValidationError as exc:
            raise ApiProblem(422, f"run {cell.label}: {first_problem(exc)}") from exc
        except (InvalidSpec, ApiProblem) as exc:
            raise ApiProblem(422, f"run {cell.label}: {exc}") from exc
        cells.append(BatchRun(model_id=cell.model_id, spec=spec, steps_total=spec.step_count()))
    batch, runs, created = svc.store.create_batch(
        who.user_id, body.name, body.model_dump(mode="json", exclude_none=True), cells,
        idempotency_key=idempotency_key, request_hash=request_hash(body.model_dump(mode="json")))
    if not created:
        mark_replayed(response)
        return _out(batch, _runs(svc, batch))
    svc.lifecycle.enqueued(runs)
    svc.wake_controller()
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return _out(batch, runs)


@router.get("", response_model=BatchPage, responses=problems(400, 422))
def list_batches(who: CallerDep, svc: ServicesDep,
                 cursor: CursorQuery = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20) -> BatchPage:
    """The caller's batches, newest first."""
    batches, next_cursor = keyset_page(
        svc.store.list_batches(who.user_id, before_id=decode_cursor(cursor), limit=limit + 1),
        limit, lambda b: b.id)
    return BatchPage(items=[_out(b, _runs(svc, b)) for b in batches], next_cursor=next_cursor)


@router.get("/{batch_id}", response_model=BatchOut, responses=ONE_BATCH)
def get_batch(batch_id: BatchId, who: CallerDep, svc: ServicesDep) -> BatchOut:
    """The batch: its runs by status and the progress of them all."""
    batch = svc.store.get_batch(batch_id, who.user_id)
    return _out(batch, _runs(svc, batch))


@router.post("/{batch_id}/stop", status_code=202, response_model=StopAllOut,
             responses=ONE_BATCH)
def stop_batch(batch_id: BatchId, who: CallerDep, svc: ServicesDep) -> StopAllOut:
    """Ask every queued or active run of the batch to stop (as POST /v1/runs/{id}/stop
    does: partial results are saved; a queued run never starts)."""
    batch = svc.store.get_batch(batch_id, who.user_id)
    stopping = []
    for run in _runs(svc, batch):
        if not run.status.is_terminal:
            request_stop(svc, run)
            stopping.append(run.id)
    return StopAllOut(stopping=stopping)
