"""Bodies of GET /v1/batches/{id}/compare and GET /v1/leaderboard: runs, cells (a player
on one session, over its repeats) and players, each metric with its mean, standard
deviation and bootstrap interval (api.comparison says how they are computed)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from api.comparison import (
    CONFIDENCE,
    METHOD,
    NO_STAT,
    Cell,
    Comparison,
    Difference,
    Marks,
    Play,
    Player,
    Stat,
)
from core.status import RunStatus

BEATS = ("the mean of the per-session differences of mean return with this baseline on the "
         "sessions both played, and its interval; null without such sessions (or for the "
         "baseline itself)")


class StatOut(BaseModel):
    n: int = Field(description="Runs with a value (completed ones only)")
    mean: float | None
    std: float | None = Field(description="Standard deviation of the runs' values (n - 1); "
                                          "null under two values")
    ci_low: float | None = Field(description="Bootstrap interval of the mean; null under two "
                                             "values")
    ci_high: float | None

    @classmethod
    def of(cls, s: Stat) -> StatOut:
        return cls(n=s.n, mean=s.mean, std=s.std, ci_low=s.ci_low, ci_high=s.ci_high)


class DifferenceOut(BaseModel):
    player: str
    versus: str
    metric: str
    sessions: int = Field(description="Symbol and session pairs both played (the pairs)")
    difference: float | None = Field(description="player - versus: the mean of the "
                                                 "per-session differences of means")
    ci_low: float | None
    ci_high: float | None
    excludes_zero: bool | None = Field(description="The interval is all above or all below "
                                                   "zero; null without an interval")
    better: bool | None = Field(description="The difference is on the metric's good side "
                                            "(above zero unless lower is better)")

    @classmethod
    def of(cls, d: Difference | None) -> DifferenceOut | None:
        if d is None:
            return None
        return cls(player=d.player, versus=d.versus, metric=d.metric, sessions=d.sessions,
                   difference=d.difference, ci_low=d.ci_low, ci_high=d.ci_high,
                   excludes_zero=d.excludes_zero, better=d.better)


class MarksOut(BaseModel):
    contaminated_runs: int = Field(description="Counted runs whose session is inside the "
                                               "model's training data")
    lookahead_runs: int = Field(description="Counted runs whose look-ahead is not clean: "
                                            "their figures may use the future")
    lookahead_violation_runs: int = Field(description="Of these, runs whose research "
                                                      "answered items before they were known")
    lookahead_possible_runs: int = Field(description="Of these, runs that used an outside "
                                                     "tool that is not point-in-time")

    @staticmethod
    def fields(m: Marks) -> dict[str, int]:
        return {"contaminated_runs": m.contaminated_runs, "lookahead_runs": m.lookahead_runs,
                "lookahead_violation_runs": m.lookahead_violation_runs,
                "lookahead_possible_runs": m.lookahead_possible_runs}


class CompareRow(BaseModel):
    rank: int = Field(description="1 is the best return; runs without a result come last")
    run_id: int
    model_id: int
    model: str = Field(description="The signature of the run's model")
    player: str = Field(description="Who decided: the model's signature, or the baseline")
    baseline: bool = Field(description="A baseline's run (buy_and_hold, sma_crossover, "
                                       "random)")
    repeat: int = Field(description="Which repeat of its cell (0 first)")
    seed: int
    symbol: str
    session: str = Field(description="The date (intraday) or start..end (daily)")
    status: RunStatus
    counted: bool = Field(description="Completed with a result: its figures enter the "
                                      "statistics")
    return_pct: float | None
    max_drawdown_pct: float | None
    sharpe: float | None
    trades: int | None
    win_rate: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost: Decimal | None = Field(description="US dollars of LLM cost known")
    benchmark_return_pct: float | None = Field(
        description="Buy-and-hold of the same symbol over the same steps")
    excess_return_pct: float | None = Field(description="return_pct - benchmark_return_pct")
    lookahead: str | None = Field(
        default=None, description="What the agent's tools could know: clean, 'N items' "
                                  "answered before they were known, or possible (an outside "
                                  "tool not point-in-time); null until the run has a result")
    contaminated: bool | None = Field(description="The session is inside the model's "
                                                  "training data; null when unknown")
    metrics: dict[str, float] = Field(description="Every figure of the run the statistics "
                                                  "read, by metric name")

    @classmethod
    def of(cls, p: Play) -> CompareRow:
        result: dict[str, Any] = p.run.result or {}
        bench = (result.get("benchmark") or {}).get("return_pct")
        ret, cost = result.get("return_pct"), result.get("cost")
        return cls(
            rank=0, run_id=p.run.id, model_id=p.run.model_id, model=p.model, player=p.player,
            baseline=p.baseline, repeat=p.repeat, seed=p.run.spec.seed, symbol=p.symbol,
            session=p.session, status=p.run.status, counted=p.counted, return_pct=ret,
            max_drawdown_pct=result.get("max_drawdown_pct"), sharpe=result.get("sharpe"),
            trades=result.get("trades"), win_rate=result.get("win_rate"),
            tokens_in=result.get("tokens_in"), tokens_out=result.get("tokens_out"),
            cost=None if cost is None else Decimal(cost), benchmark_return_pct=bench,
            excess_return_pct=None if ret is None or bench is None else round(ret - bench, 4),
            lookahead=result.get("lookahead"), contaminated=p.contaminated,
            metrics=dict(p.values))


class CompareCell(MarksOut):
    player: str
    baseline: bool
    model_id: int | None = Field(description="The model; null for a baseline")
    symbol: str
    session: str
    runs: int = Field(description="Its runs: the repeats")
    with_result: int = Field(description="Completed runs with a result (the statistics are "
                                         "of these)")
    stats: dict[str, StatOut] = Field(description="Each metric over the repeats")
    beats_random: DifferenceOut | None = Field(description=f"Against random: {BEATS}")
    beats_buy_and_hold: DifferenceOut | None = Field(
        description=f"Against buy_and_hold: {BEATS}")

    @classmethod
    def of(cls, c: Cell) -> CompareCell:
        return cls(player=c.player, baseline=c.baseline, model_id=c.model_id, symbol=c.symbol,
                   session=c.session, runs=c.runs, with_result=c.with_result,
                   stats={k: StatOut.of(s) for k, s in c.stats.items()},
                   beats_random=DifferenceOut.of(c.beats_random),
                   beats_buy_and_hold=DifferenceOut.of(c.beats_buy_and_hold),
                   **MarksOut.fields(c.marks))


class PlayerSummary(MarksOut):
    rank: int = Field(description="By the mean of the comparison's metric; players without "
                                  "one last")
    player: str
    baseline: bool
    model_id: int | None = Field(description="The model; null for a baseline")
    runs: int
    with_result: int = Field(description="Completed runs with a result (the statistics are "
                                         "of these)")
    sessions: int = Field(description="Symbol and session pairs with a counted run")
    stats: dict[str, StatOut] = Field(
        description="Each metric: the mean of the session means, its interval from "
                    "resampling the sessions, then each one's repeats; n and std of the runs")
    mean_return_pct: float | None = Field(description="stats.return_pct.mean")
    mean_excess_return_pct: float | None = Field(description="stats.excess_return_pct.mean")
    total_cost: Decimal = Field(description="US dollars of LLM cost known, all its runs")
    tokens_in: int
    tokens_out: int
    beats_random: DifferenceOut | None = Field(description=f"Against random: {BEATS}")
    beats_buy_and_hold: DifferenceOut | None = Field(
        description=f"Against buy_and_hold: {BEATS}")

    @classmethod
    def of(cls, p: Player) -> PlayerSummary:
        results = [play.run.result or {} for play in p.plays]
        return cls(
            rank=p.rank, player=p.player, baseline=p.baseline, model_id=p.model_id,
            runs=p.runs, with_result=p.with_result, sessions=p.sessions,
            stats={k: StatOut.of(s) for k, s in p.stats.items()},
            mean_return_pct=_mean(p, "return_pct"),
            mean_excess_return_pct=_mean(p, "excess_return_pct"),
            total_cost=sum((Decimal(r["cost"]) for r in results if r.get("cost") is not None),
                           Decimal(0)),
            tokens_in=sum(int(r.get("tokens_in") or 0) for r in results),
            tokens_out=sum(int(r.get("tokens_out") or 0) for r in results),
            beats_random=DifferenceOut.of(p.beats_random),
            beats_buy_and_hold=DifferenceOut.of(p.beats_buy_and_hold),
            **MarksOut.fields(p.marks))


def _mean(p: Player, metric: str) -> float | None:
    stat = p.stats.get(metric)
    return None if stat is None or stat.mean is None else round(stat.mean, 4)


class Method(BaseModel):
    confidence: float = Field(default=CONFIDENCE, description="Of every interval")
    method: str = Field(default=METHOD, description="How the intervals are computed")


class CompareOut(Method):
    batch_id: int
    name: str | None
    metric: str = Field(description="What the players are ranked by and the differences "
                                    "are of")
    higher_is_better: bool
    rows: list[CompareRow] = Field(description="One per run, ranked by return_pct")
    cells: list[CompareCell] = Field(description="One per player, symbol and session: its "
                                                 "repeats")
    players: list[PlayerSummary] = Field(description="Ranked by the metric's mean")
    versus: str | None = Field(description="The player every difference is against (the "
                                           "leader unless asked)")
    differences: list[DifferenceOut] = Field(
        description="Each other player minus `versus` on the metric, paired by session")

    @classmethod
    def of(cls, batch_id: int, name: str | None, rows: list[CompareRow],
           c: Comparison) -> CompareOut:
        return cls(batch_id=batch_id, name=name, metric=c.metric,
                   higher_is_better=c.higher_is_better, rows=rows,
                   cells=[CompareCell.of(cell) for cell in c.cells],
                   players=[PlayerSummary.of(p) for p in c.players], versus=c.versus,
                   differences=[d for d in map(DifferenceOut.of, c.differences) if d])


class LeaderboardEntry(MarksOut):
    rank: int
    player: str
    baseline: bool
    model_id: int | None = Field(description="The model; null for a baseline")
    value: StatOut = Field(description="The metric: the mean of the player's session means "
                                       "with its interval (n and std of the runs)")
    runs: int
    with_result: int = Field(description="Completed runs with a result (the statistics are "
                                         "of these)")
    sessions: int = Field(description="Symbol and session pairs with a counted run")
    batches: list[int] = Field(description="The batches its runs are in")
    beats_random: DifferenceOut | None = Field(description=f"Against random: {BEATS}")

    @classmethod
    def of(cls, p: Player, metric: str) -> LeaderboardEntry:
        stat = p.stats.get(metric, NO_STAT)
        return cls(rank=p.rank, player=p.player, baseline=p.baseline, model_id=p.model_id,
                   value=StatOut.of(stat), runs=p.runs, with_result=p.with_result,
                   sessions=p.sessions,
                   batches=sorted({b for play in p.plays if (b := play.run.batch_id)}),
                   beats_random=DifferenceOut.of(p.beats_random), **MarksOut.fields(p.marks))


class LeaderboardOut(Method):
    metric: str
    higher_is_better: bool
    batch_id: int | None = Field(description="The batch asked for; null: all of yours")
    entries: list[LeaderboardEntry] = Field(description="Best mean first; players without "
                                                        "a value last")
