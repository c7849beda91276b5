"""Comparisons that are not noise: players side by side over repeats, with intervals.

A *player* is who decides in a run: a model (its signature) or a baseline (buy_and_hold,
sma_crossover, random). A *cell* is one player on one session of one symbol; its runs
are the repeats. Every figure is a run's own stored result (`result` and its
`metrics`); only completed runs count (a stopped or failed run's figures cover part of
its session), the others still show as rows.

Intervals are percentile bootstraps (scipy.stats.bootstrap) of a mean, 95%, 4999
resamples from a fixed seed, so the same runs give the same answer on every request:

- a cell: its repeats resampled (one repeat: no interval);
- a player: the mean of its session means (each session weighs the same however many
  repeats ended), resampled in two stages: the sessions, then each drawn session's
  repeats. One repeat a session makes it the sessions' bootstrap; one session, the
  repeats';
- a difference between two players: paired by symbol and session, the mean of the
  per-session differences of means, resampled the same way (each side's repeats on
  their own), on the sessions both played. A baseline played once a session is one
  value there: its noise shows only across sessions.

Resampling the sessions treats them as a sample of the sessions the players could meet;
resampling the repeats keeps the runs' own noise in even when there are two sessions
(the sessions alone would then give an interval between two numbers). A percentile
bootstrap of few values still runs narrow: simulated, the 95% intervals of a
difference held the truth 75% of the time over 2 sessions, 90% over 5 and 92% over 10
(3 repeats a session). Few sessions and repeats make rough intervals, not proofs.

Nothing here touches the store or the web: routes and tests hand it runs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from core.records import Run
from core.status import RunStatus

CONFIDENCE = 0.95
RESAMPLES = 4999  # the endpoints' Monte Carlo error is far inside the interval
# Resamples computed at once: memory is rows x BATCH x values floats; for a nested
# interval, at most NESTED_CELLS draws of repeats at once.
BATCH = 250
NESTED_CELLS = 4_000_000
SEED = 20_250_101  # any fixed seed: an answer must not change between two requests
METHOD = (f"percentile bootstrap (scipy.stats.bootstrap) of the mean, {CONFIDENCE:.0%}, "
          f"{RESAMPLES} resamples, seed {SEED}: a cell's repeats; for a player or a "
          f"difference, the sessions, then each drawn session's repeats")

RANDOM, BUY_AND_HOLD, SMA_CROSSOVER = "random", "buy_and_hold", "sma_crossover"
BASELINES = (BUY_AND_HOLD, SMA_CROSSOVER, RANDOM)


class Metric(StrEnum):
    """A figure players are compared on: the result's own, or its `metrics`."""

    RETURN_PCT = "return_pct"
    EXCESS_RETURN_PCT = "excess_return_pct"  # return_pct - buy-and-hold's (benchmark)
    MAX_DRAWDOWN_PCT = "max_drawdown_pct"
    SHARPE = "sharpe"
    WIN_RATE = "win_rate"
    TRADES = "trades"
    TOTAL_RETURN_PCT = "total_return_pct"
    ANNUAL_RETURN_PCT = "annual_return_pct"
    VOLATILITY_PCT = "volatility_pct"
    SORTINO = "sortino"
    CALMAR = "calmar"
    MAX_DRAWDOWN_STEPS = "max_drawdown_steps"
    PROFIT_FACTOR = "profit_factor"
    TURNOVER = "turnover"
    EXPOSURE_PCT = "exposure_pct"
    FEES = "fees"
    TOKENS = "tokens"
    LLM_COST = "llm_cost"
    COST_PER_DECISION = "cost_per_decision"
    RETURN_PER_LLM_DOLLAR = "return_per_llm_dollar"


# Where less is better: a ranking by one of these puts the smallest first.
LOWER_IS_BETTER = frozenset({
    Metric.MAX_DRAWDOWN_PCT, Metric.MAX_DRAWDOWN_STEPS, Metric.VOLATILITY_PCT, Metric.FEES,
    Metric.TURNOVER, Metric.TOKENS, Metric.LLM_COST, Metric.COST_PER_DECISION})
# Read from the result itself; `metrics` fills what it lacks. The rest from `metrics`.
RESULT_KEYS = ("return_pct", "max_drawdown_pct", "sharpe", "win_rate", "trades")


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


# -- one run -------------------------------------------------------------------------
@dataclass(frozen=True)
class Play:
    """One run as a comparison sees it."""

    run: Run
    player: str
    baseline: bool
    model: str  # the signature of the run's model (a baseline's run has one too)
    symbol: str
    session: str  # the date (intraday) or start..end (daily)
    repeat: int
    values: Mapping[str, float]  # every finite number of the result, by metric name
    counted: bool  # completed with a result: its values enter the statistics
    lookahead: str | None
    contaminated: bool | None  # the session inside the model's training data

    @property
    def where(self) -> tuple[str, str]:
        return self.symbol, self.session


def baseline_of(run: Run) -> str | None:
    """The baseline a run plays (its decider), or None for a model's run. A batch marks
    the runs it plays beside its models (`baseline: true` in their specs); a model's run
    that plays a rule (sma_crossover without an LLM, say) is still that model's."""
    if not run.spec.baseline:
        return None
    decider = _text(run.spec.decider) or run.decider or (run.result or {}).get("decider")
    return str(decider or "baseline")


def session_of(run: Run) -> str:
    spec = run.spec
    return str(spec.date) if spec.date else f"{spec.start}..{spec.end}"


def play(run: Run, signature: str) -> Play:
    result = run.result or {}
    baseline = baseline_of(run)
    contamination = result.get("contamination") or {}
    inside = contamination.get("inside_training_data") if isinstance(contamination,
                                                                      dict) else None
    # A blind run is its own player: set against the open one, the gap is memory.
    player = baseline or (f"{signature} (blind)" if run.spec.blind else signature)
    return Play(run=run, player=player, baseline=baseline is not None,
                model=signature, symbol=",".join(run.spec.symbols), session=session_of(run),
                repeat=run.spec.repeat,
                values=values_of(result),
                counted=run.status is RunStatus.COMPLETED and bool(result),
                lookahead=result.get("lookahead"),
                contaminated=inside if isinstance(inside, bool) else None)


def values_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The result's numbers by metric name: its own figures first, then every number
    of its `metrics` (booleans and non-finite values are no figures)."""
    values: dict[str, float] = {}
    for key in RESULT_KEYS:
        if (v := _number(result.get(key))) is not None:
            values[key] = v
    bench = _number((result.get("benchmark") or {}).get("return_pct"))
    if "return_pct" in values and bench is not None:
        values[Metric.EXCESS_RETURN_PCT] = values["return_pct"] - bench
    metrics = result.get("metrics")
    if isinstance(metrics, Mapping):
        for key, raw in metrics.items():
            if key not in values and (v := _number(raw)) is not None:
                values[str(key)] = v
    return values


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str | Decimal):  # money arrives as a decimal string
        try:
            number = float(Decimal(value))
        except (InvalidOperation, ValueError):
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


# -- statistics ----------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """A metric over runs: how many, their mean, standard deviation (n - 1) and the
    bootstrap interval of the mean (null from a single value)."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


NO_STAT = Stat(n=0, mean=None, std=None, ci_low=None, ci_high=None)


def _bootstrap(samples: Sequence[NDArray[np.float64]],
               statistic: Callable[..., Any]) -> tuple[NDArray[np.float64],
                                                       NDArray[np.float64]]:
    """scipy's percentile bootstrap along the last axis, from a fresh fixed-seed
    generator: the resample indices depend only on the samples' lengths, so a row's
    interval is the same whether it is computed alone or stacked with others."""
    res = stats.bootstrap(tuple(samples), statistic, axis=-1, vectorized=True,
                          paired=False, confidence_level=CONFIDENCE,
                          n_resamples=RESAMPLES, method="percentile", batch=BATCH,
                          **{_RNG: np.random.default_rng(SEED)})
    ci = res.confidence_interval
    return np.atleast_1d(ci.low), np.atleast_1d(ci.high)


# The generator's keyword: `rng` from SciPy 1.15, `random_state` before it.
_RNG = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def _mean(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return np.mean(x, axis=axis)  # type: ignore[no-any-return]


def intervals(series: Sequence[Sequence[float]]) -> list[tuple[float, float] | None]:
    """The interval of the mean of each series (None for fewer than two values); series
    of one length are resampled together, each as if alone."""
    out: list[tuple[float, float] | None] = [None] * len(series)
    by_length: dict[int, list[int]] = {}
    for i, values in enumerate(series):
        if len(values) >= 2:
            by_length.setdefault(len(values), []).append(i)
    for indices in by_length.values():
        rows = np.array([series[i] for i in indices], dtype=float)
        low, high = _bootstrap([rows], _mean)
        for j, i in enumerate(indices):
            out[i] = _bounded(rows[j], float(low[j]), float(high[j]))
    return out


def interval(values: Sequence[float]) -> tuple[float, float] | None:
    return intervals([values])[0]


def _bounded(values: NDArray[np.float64], low: float, high: float) -> tuple[float, float]:
    # All values equal: the interval is that value (no resampling noise in float sums).
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    return low, high


def _describe(values: Sequence[float], ci: tuple[float, float] | None,
              mean: float | None = None) -> Stat:
    if not values:
        return NO_STAT
    n = len(values)
    return Stat(n=n, mean=float(np.mean(values)) if mean is None else mean,
                std=float(np.std(values, ddof=1)) if n >= 2 else None,
                ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1])


def describe(columns: Mapping[str, Sequence[float]]) -> dict[str, Stat]:
    """n, mean, standard deviation and interval of each metric's values (one cell's
    repeats)."""
    return describe_all([columns])[0]


def describe_all(tables: Sequence[Mapping[str, Sequence[float]]]) -> list[dict[str, Stat]]:
    """describe() of many cells, their series resampled together (the same answer)."""
    keys = [(i, name) for i, table in enumerate(tables) for name in table]
    cis = intervals([tables[i][name] for i, name in keys])
    out: list[dict[str, Stat]] = [{} for _ in tables]
    for (i, name), ci in zip(keys, cis, strict=True):
        out[i][name] = _describe(tables[i][name], ci)
    return out


# A session of a nested series: the values of one side's repeats, and the other's (empty
# for a player's own figure, which is then mean(a) rather than mean(a) - mean(b)).
Session = tuple[Sequence[float], Sequence[float]]


def nested_intervals(series: Sequence[Sequence[Session]]) -> list[tuple[float, float] | None]:
    """The interval of mean over sessions of (mean(a) - mean(b)) for each series: the
    sessions resampled (scipy.stats.bootstrap), then each chosen session's repeats
    resampled on each side (a session of one repeat is what it is). One session: its
    repeats alone (one side, or both independently); no interval when no side of it has
    two values. Series of the same shape (sessions, most repeats a side) are resampled
    together, each as if alone."""
    out: list[tuple[float, float] | None] = [None] * len(series)
    # One session: a one-sample interval, shifted (or negated) by a constant side, or
    # a two-sample one.
    singles: list[list[float]] = []
    single_plan: list[tuple[int, int, float, float]] = []  # (series, single, sign, shift)
    pairs: list[tuple[Sequence[float], Sequence[float]]] = []
    pair_of: list[int] = []
    shapes: dict[tuple[int, int, int], list[int]] = {}
    for i, sessions in enumerate(series):
        if len(sessions) >= 2:
            shape = (len(sessions), max(len(a) for a, _ in sessions),
                     max(len(b) for _, b in sessions))
            shapes.setdefault(shape, []).append(i)
            continue
        if not sessions:
            continue
        a, b = sessions[0]
        if len(a) >= 2 and len(b) >= 2:
            pairs.append((a, b))
            pair_of.append(i)
        elif len(a) >= 2:  # b one value (a constant) or none
            single_plan.append((i, len(singles), 1.0, -b[0] if b else 0.0))
            singles.append(list(a))
        elif len(b) >= 2 and a:
            single_plan.append((i, len(singles), -1.0, a[0]))
            singles.append(list(b))
    one = intervals(singles)
    for i, j, sign, shift in single_plan:
        if (ci := one[j]) is not None:
            ends = sorted((shift + sign * ci[0], shift + sign * ci[1]))
            out[i] = ends[0], ends[1]
    for i, ci in zip(pair_of, _two_sample_intervals(pairs), strict=True):
        out[i] = ci
    for shape, indices in shapes.items():
        for i, ci in zip(indices, _nested(shape, [series[i] for i in indices]), strict=True):
            out[i] = ci
    return out


def _padded(sessions: Sequence[Sequence[Sequence[float]]], width: int
            ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Rows of sessions of repeats as (rows, sessions, width) values and their counts."""
    values = np.zeros((len(sessions), len(sessions[0]), max(width, 1)))
    counts = np.zeros((len(sessions), len(sessions[0])), dtype=np.int64)
    for r, row in enumerate(sessions):
        for s, repeats in enumerate(row):
            values[r, s, :len(repeats)] = repeats
            counts[r, s] = len(repeats)
    return values, counts


def _nested(shape: tuple[int, int, int], rows: Sequence[Sequence[Session]]
            ) -> list[tuple[float, float]]:
    k, width_a, width_b = shape
    a, na = _padded([[x for x, _ in row] for row in rows], width_a)
    b, nb = _padded([[y for _, y in row] for row in rows], width_b)
    # The repeats' draws: one generator a call, draws shaped by (resamples, sessions,
    # width) only, so a row gets the same ones alone or stacked.
    inner = np.random.default_rng(SEED + 1)
    row = np.arange(len(rows))[:, None, None, None]

    def side(values: NDArray[np.float64], counts: NDArray[np.int64],
             chosen: NDArray[np.int64], width: int) -> NDArray[np.float64]:
        n = counts[row[..., 0], chosen]  # (rows, resamples, k)
        if width == 0:
            return np.zeros(n.shape)
        if width == 1:  # one repeat a session: nothing to draw
            return values[row[..., 0], chosen, 0]  # type: ignore[no-any-return]
        u = inner.random((chosen.shape[1], k, width))
        pick = np.minimum((u[None] * n[..., None]).astype(np.int64), width - 1)
        drawn = values[row, chosen[..., None], pick]
        used = np.arange(width) < n[..., None]
        return (drawn * used).sum(-1) / np.maximum(n, 1)  # type: ignore[no-any-return]

    def statistic(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
        if x.ndim == 2:  # the batch's own sessions: the estimate itself
            mean_a = (a * (np.arange(a.shape[-1]) < na[..., None])).sum(-1) / na
            mean_b = ((b * (np.arange(b.shape[-1]) < nb[..., None])).sum(-1)
                      / np.maximum(nb, 1) if width_b else 0.0)
            return np.mean(mean_a - mean_b, axis=-1)  # type: ignore[no-any-return]
        chosen = x.astype(np.int64)  # (rows, resamples, k): sessions drawn
        drawn: NDArray[np.float64] = np.mean(
            side(a, na, chosen, width_a) - side(b, nb, chosen, width_b), axis=-1)
        return drawn

    sessions = np.tile(np.arange(k, dtype=float), (len(rows), 1))
    batch = max(1, min(BATCH, NESTED_CELLS // (len(rows) * k * max(width_a, width_b, 1))))
    res = stats.bootstrap((sessions,), statistic, axis=-1, vectorized=True,
                          confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                          method="percentile", batch=batch, **{_RNG: np.random.default_rng(SEED)})
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(
        res.confidence_interval.high)
    return [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)]


def _metric_names(plays: Iterable[Play]) -> list[str]:
    """Every metric some counted run has: the known ones in order, then any other."""
    seen = {key for p in plays if p.counted for key in p.values}
    known = [m.value for m in Metric if m.value in seen]
    return known + sorted(seen - set(known))


# -- cells and players ---------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """`player` minus `versus` on `metric`, paired by symbol and session."""

    player: str
    versus: str
    metric: str
    sessions: int  # sessions both played with a value of the metric
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    excludes_zero: bool | None
    better: bool | None  # the mean difference is on the metric's good side


@dataclass(frozen=True)
class Marks:
    """Runs whose figures may not be fair: the session inside the model's training data,
    or research that could know the future."""

    contaminated_runs: int = 0
    lookahead_runs: int = 0  # not clean: violations and possible
    lookahead_violation_runs: int = 0  # items answered before they were known
    lookahead_possible_runs: int = 0  # an outside tool that is not point-in-time

    @classmethod
    def of(cls, plays: Iterable[Play]) -> Marks:
        plays = [p for p in plays if p.counted]
        possible = sum(p.lookahead == "possible" for p in plays)
        flagged = sum(p.lookahead not in (None, "clean") for p in plays)
        return cls(contaminated_runs=sum(p.contaminated is True for p in plays),
                   lookahead_runs=flagged, lookahead_violation_runs=flagged - possible,
                   lookahead_possible_runs=possible)


@dataclass
class Cell:
    """One player on one symbol's session: its repeats."""

    player: str
    baseline: bool
    model_id: int | None
    symbol: str
    session: str
    plays: list[Play]
    stats: dict[str, Stat] = field(default_factory=dict)
    beats_random: Difference | None = None
    beats_buy_and_hold: Difference | None = None

    @property
    def where(self) -> tuple[str, str]:
        return self.symbol, self.session

    @property
    def runs(self) -> int:
        return len(self.plays)

    @property
    def with_result(self) -> int:
        return sum(p.counted for p in self.plays)

    @property
    def marks(self) -> Marks:
        return Marks.of(self.plays)

    def values(self, metric: str) -> list[float]:
        return [p.values[metric] for p in self.plays if p.counted and metric in p.values]


@dataclass
class Player:
    """A player over all its cells."""

    player: str
    baseline: bool
    model_id: int | None
    cells: list[Cell]
    stats: dict[str, Stat] = field(default_factory=dict)
    rank: int = 0
    beats_random: Difference | None = None
    beats_buy_and_hold: Difference | None = None

    @property
    def plays(self) -> list[Play]:
        return [p for c in self.cells for p in c.plays]

    @property
    def runs(self) -> int:
        return len(self.plays)

    @property
    def with_result(self) -> int:
        return sum(p.counted for p in self.plays)

    @property
    def sessions(self) -> int:
        return sum(1 for c in self.cells if c.with_result)

    @property
    def marks(self) -> Marks:
        return Marks.of(self.plays)


def cells_of(plays: Iterable[Play], names: Sequence[str] | None = None) -> list[Cell]:
    """Plays grouped by (player, symbol, session), in the order first seen, with the
    statistics of each metric named (default: every metric some counted run has)."""
    cells: dict[tuple[bool, str, str, str], Cell] = {}
    for p in plays:
        key = (p.baseline, p.player, p.symbol, p.session)
        if key not in cells:
            cells[key] = Cell(player=p.player, baseline=p.baseline,
                              model_id=None if p.baseline else p.run.model_id,
                              symbol=p.symbol, session=p.session, plays=[])
        cells[key].plays.append(p)
    out = list(cells.values())
    if names is None:
        names = _metric_names(p for c in out for p in c.plays)
    tables = describe_all([{m: cell.values(m) for m in names} for cell in out])
    for cell, table in zip(out, tables, strict=True):
        cell.stats = table
    return out


def _session_values(cells: Iterable[Cell], metric: str) -> dict[tuple[str, str], list[float]]:
    return {c.where: v for c in cells if (v := c.values(metric))}


def player_stats(players: Sequence[Sequence[Cell]], names: Sequence[str]
                 ) -> list[dict[str, Stat]]:
    """Each metric over each player's sessions: the mean of its session means with its
    nested interval (sessions, then repeats); n and the standard deviation are of the
    runs. All resampled together."""
    keys: list[tuple[int, str, list[list[float]]]] = []
    for i, cells in enumerate(players):
        keys += [(i, m, list(_session_values(cells, m).values())) for m in names]
    cis = nested_intervals([[(v, ()) for v in sessions] for _, _, sessions in keys])
    out: list[dict[str, Stat]] = [{} for _ in players]
    for (i, name, sessions), ci in zip(keys, cis, strict=True):
        runs = [v for values in sessions for v in values]
        means = [float(np.mean(v)) for v in sessions]
        out[i][name] = _describe(runs, ci, float(np.mean(means)) if means else None)
    return out


@dataclass(frozen=True)
class Ask:
    """A difference to compute: `player` (its cells) minus `versus` (theirs)."""

    mine: Sequence[Cell]
    theirs: Sequence[Cell]
    metric: str
    player: str
    versus: str


def difference(mine: Sequence[Cell], theirs: Sequence[Cell], metric: str, *,
               player: str, versus: str) -> Difference:
    """mine - theirs on the sessions both played: the mean of the per-session
    differences of means, with its nested interval (those sessions resampled, then each
    side's repeats within them; on one session, both sides' repeats)."""
    return paired_differences([Ask(mine, theirs, metric, player, versus)])[0]


def paired_differences(asks: Sequence[Ask]) -> list[Difference]:
    """difference() of each ask, their series resampled together (the same answers)."""
    series: list[list[Session]] = []
    diffs: list[float | None] = []
    for ask in asks:
        a, b = _session_values(ask.mine, ask.metric), _session_values(ask.theirs, ask.metric)
        pairs: list[Session] = [(a[w], b[w]) for w in a if w in b]
        series.append(pairs)
        diffs.append(float(np.mean([np.mean(x) - np.mean(y) for x, y in pairs]))
                     if pairs else None)
    out = []
    for ask, pairs, diff, ci in zip(asks, series, diffs, nested_intervals(series),
                                    strict=True):
        good = higher_is_better(ask.metric)
        out.append(Difference(
            player=ask.player, versus=ask.versus, metric=ask.metric, sessions=len(pairs),
            difference=diff, ci_low=None if ci is None else ci[0],
            ci_high=None if ci is None else ci[1],
            excludes_zero=None if ci is None else bool(ci[0] > 0 or ci[1] < 0),
            better=None if diff is None else bool(diff > 0 if good else diff < 0)))
    return out


def _two_sample_intervals(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]
                          ) -> list[tuple[float, float]]:
    """The interval of mean(x) - mean(y) of each pair (two values or more each side),
    each side resampled on its own; pairs of the same lengths resampled together."""
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(pairs)
    by_lengths: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(pairs):
        if np.ptp(x) == 0 and np.ptp(y) == 0:
            out[i] = (x[0] - y[0], x[0] - y[0])
        else:
            by_lengths.setdefault((len(x), len(y)), []).append(i)
    for indices in by_lengths.values():
        xs = np.array([pairs[i][0] for i in indices], dtype=float)
        ys = np.array([pairs[i][1] for i in indices], dtype=float)
        low, high = _bootstrap([xs, ys], lambda p, q, axis=-1: _mean(p, axis) - _mean(q, axis))
        for j, i in enumerate(indices):
            out[i] = float(low[j]), float(high[j])
    return out


# -- the comparison ------------------------------------------------------------------
@dataclass
class Comparison:
    metric: str  # what players are ranked by
    higher_is_better: bool
    cells: list[Cell]
    players: list[Player]  # ranked by the metric's mean (none last)
    versus: str | None  # the player the differences are against
    differences: list[Difference]


def compare(plays: Sequence[Play], metric: str = Metric.RETURN_PCT,
            versus: str | None = None, *, differences: bool = True,
            only_metric: bool = False) -> Comparison:
    """Cells and players with their statistics, each against the random and
    buy-and-hold baselines on the same sessions (by return), ranked by `metric`, and
    every player's difference with `versus` on it (default: the leader). With
    `only_metric`, the statistics are of `metric` alone (a leaderboard's)."""
    names = [str(metric)] if only_metric else _metric_names(plays)
    cells = cells_of(plays, names)
    groups: dict[tuple[bool, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.baseline, cell.player), []).append(cell)
    tables = player_stats(list(groups.values()), names)
    players = [Player(player=name, baseline=baseline, model_id=mine[0].model_id, cells=mine,
                      stats=table)
               for ((baseline, name), mine), table in zip(groups.items(), tables, strict=True)]
    baselines = {name: mine for (baseline, name), mine in groups.items() if baseline}
    # Each cell and each player against random and buy-and-hold (not against itself).
    asks: list[tuple[Cell | Player, str, Ask]] = []
    for name, field_name in ((RANDOM, "beats_random"), (BUY_AND_HOLD, "beats_buy_and_hold")):
        theirs = baselines.get(name, [])
        for cell in cells:
            same = [c for c in theirs if c.where == cell.where]
            if same and not (cell.baseline and cell.player == name):
                asks.append((cell, field_name, Ask([cell], same, Metric.RETURN_PCT,
                                                   cell.player, name)))
        for p in players:
            if theirs and not (p.baseline and p.player == name):
                asks.append((p, field_name, Ask(p.cells, theirs, Metric.RETURN_PCT,
                                                p.player, name)))
    for (owner, field_name, _), d in zip(asks, paired_differences([a for *_, a in asks]),
                                         strict=True):
        setattr(owner, field_name, d)
    players = rank(players, metric)
    target = _find(players, versus) if versus is not None else (players[0] if players
                                                                 else None)
    against = [] if target is None or not differences else paired_differences([
        Ask(p.cells, target.cells, metric, p.player, target.player)
        for p in players if p is not target])
    return Comparison(metric=str(metric), higher_is_better=higher_is_better(metric),
                      cells=cells, players=players,
                      versus=None if target is None else target.player,
                      differences=against)


def _find(players: Sequence[Player], name: str) -> Player:
    for p in players:  # a model first, should one be named like a baseline
        if p.player == name and not p.baseline:
            return p
    for p in players:
        if p.player == name:
            return p
    raise KeyError(name)


def rank(players: Sequence[Player], metric: str) -> list[Player]:
    """Best mean of the metric first, players without one last; rank 1, 2, ..."""
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(p: Player) -> tuple[bool, float, bool, str]:
        mean = p.stats.get(metric, NO_STAT).mean
        return mean is None, sign * (mean or 0.0), p.baseline, p.player

    ranked = sorted(players, key=key)
    for i, p in enumerate(ranked, 1):
        p.rank = i
    return ranked
