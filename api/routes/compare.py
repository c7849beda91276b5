"""Comparisons: a batch's players side by side (GET /v1/batches/{id}/compare) and the
caller's players over all their batches (GET /v1/leaderboard), each figure a mean over
repeats and sessions with its bootstrap interval, against the baselines, with the runs
whose figures may not be fair marked. The statistics are api.comparison's; this module
only reads the runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.compare_schemas import CompareOut, CompareRow, LeaderboardEntry, LeaderboardOut
from api.comparison import Metric, Play, compare, higher_is_better, play
from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem, problems
from api.services import Services
from core.records import Run
from core.store import RunFilter

router = APIRouter(responses=problems(401))

ALL = 100_000
BatchId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Batch id")]
METRICS = ", ".join(m.value for m in Metric)
MetricQuery = Annotated[Metric, Query(
    description="What the players are ranked by (max_drawdown_pct, volatility_pct, fees, "
                "turnover, tokens and costs: least first; the others: most first)")]
Versus = Annotated[str | None, Query(
    min_length=1, max_length=200, pattern=r"^[^\x00]*$",
    description="The player the differences are against (a model's signature or a "
                "baseline: buy_and_hold, sma_crossover, random); default: the leader")]


def plays_of(svc: Services, runs: Iterable[Run]) -> list[Play]:
    runs = sorted(runs, key=lambda r: r.id)
    signatures = {m: svc.store.get_model(m).signature for m in {r.model_id for r in runs}}
    return [play(run, signatures[run.model_id]) for run in runs]


def ranked_rows(plays: Sequence[Play]) -> list[CompareRow]:
    """One row per run, best return first (runs without one last)."""
    rows = sorted((CompareRow.of(p) for p in plays),
                  key=lambda r: (r.return_pct is None, -(r.return_pct or 0.0), r.run_id))
    return [r.model_copy(update={"rank": i}) for i, r in enumerate(rows, 1)]


@router.get("/v1/batches/{batch_id}/compare", response_model=CompareOut, tags=["batches"],
            responses=problems(404, 422, why={
                422: "A parameter does not validate (`metric` names one of the metrics "
                     "listed), or `versus` is no player of the batch"}))
def compare_batch(batch_id: BatchId, who: CallerDep, svc: ServicesDep,
                  metric: MetricQuery = Metric.RETURN_PCT, versus: Versus = None
                  ) -> CompareOut:
    """The batch's runs side by side, ranked by return (runs without a result last),
    against buy-and-hold of the same symbol on the same sessions; the cells (a player
    on one session: its repeats) and the players, each metric with n, mean, standard
    deviation and a 95% bootstrap interval; each against the random and buy-and-hold
    baselines on the same sessions, and each minus `versus` on `metric`. Only completed
    runs count in the statistics. Every figure is the runs' own stored results."""
    batch = svc.store.get_batch(batch_id, who.user_id)
    runs = svc.store.list_runs(batch.user_id, RunFilter(batch_id=batch.id, limit=ALL))
    plays = plays_of(svc, runs)
    try:
        comparison = compare(plays, metric, versus)
    except KeyError as exc:
        raise ApiProblem(422, f"versus: {versus!r} is no player of batch {batch.id}") from exc
    return CompareOut.of(batch.id, batch.name, ranked_rows(plays), comparison)


@router.get("/v1/leaderboard", response_model=LeaderboardOut, tags=["leaderboard"],
            responses=problems(404, 422, why={
                404: "No such batch, or it belongs to someone else",
                422: f"A parameter does not validate; `metric` is one of {METRICS}"}))
def leaderboard(who: CallerDep, svc: ServicesDep, metric: MetricQuery = Metric.SHARPE,
                batch_id: Annotated[int | None, Query(
                    ge=1, le=2**63 - 1, description="Only this batch's runs")] = None,
                ) -> LeaderboardOut:
    """Your players (models and baselines) over the runs of all your batches, or of one,
    ranked by the mean of `metric` with its 95% bootstrap interval, runs and sessions,
    against the random baseline, and marked where figures may not be fair (the session
    inside the model's training data; research that could know the future). A session
    played in two batches is one session with the repeats of both."""
    if batch_id is not None:
        svc.store.get_batch(batch_id, who.user_id)  # 404 unless it is the caller's
    runs = [r for r in svc.store.list_runs(who.user_id, RunFilter(batch_id=batch_id,
                                                                  limit=ALL))
            if r.batch_id is not None]
    comparison = compare(plays_of(svc, runs), metric, differences=False, only_metric=True)
    return LeaderboardOut(metric=metric.value, higher_is_better=higher_is_better(metric),
                          batch_id=batch_id,
                          entries=[LeaderboardEntry.of(p, metric) for p in comparison.players])
