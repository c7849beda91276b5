"""api.comparison on runs made in memory: bootstrap intervals that cover what they should,
paired differences, a single repeat, players absent from some sessions, baselines and
marks."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import numpy as np
import pytest
from scipy import stats

from api.comparison import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    Metric,
    compare,
    difference,
    interval,
    intervals,
    nested_intervals,
    play,
    values_of,
)
from core.records import Run
from core.spec import RunSpec
from core.status import RunStatus

_ids = itertools.count(1)
DAYS = [dt.date(2025, 3, 3), dt.date(2025, 3, 4), dt.date(2025, 3, 5)]


def run(model_id: int, day: dt.date, ret: float | None, *, symbol: str = "AAPL",
        repeat: int = 0, decider: str | None = None, baseline: bool = False,
        status: RunStatus = RunStatus.COMPLETED, **result: Any) -> Run:
    spec = RunSpec(mode="intraday", symbols=[symbol], date=day, decider=decider,  # type: ignore[arg-type]
                   repeat=repeat, seed=repeat, baseline=baseline)
    body = None if ret is None else {"return_pct": ret, "benchmark": {"return_pct": 0.5},
                                     "lookahead": "clean", **result}
    now = dt.datetime(2025, 3, 6, tzinfo=dt.UTC)
    return Run(id=next(_ids), user_id="u", model_id=model_id, spec=spec, status=status,
               status_reason=None, steps_total=390, steps_done=390, created_at=now,
               admitted_at=now, started_at=now, finished_at=now, stop_requested_at=None,
               result=body)


def plays(*runs: Run, names: dict[int, str] | None = None) -> list[Any]:
    names = names or {1: "alpha", 2: "beta", 3: "gamma"}
    return [play(r, names.get(r.model_id, f"m{r.model_id}")) for r in runs]


def by_player(comparison: Any) -> dict[str, Any]:
    return {p.player: p for p in comparison.players}


def test_the_interval_of_a_series_covers_its_known_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 1.0, size=40)
    low, high = interval(list(values))
    assert low < 5.0 < high and low < values.mean() < high
    expected = stats.bootstrap((values,), np.mean, confidence_level=CONFIDENCE,
                               n_resamples=RESAMPLES, method="percentile",
                               rng=np.random.default_rng(SEED)).confidence_interval
    assert (low, high) == pytest.approx((expected.low, expected.high))
    # About 95% of the intervals of many such series cover the mean they were drawn from
    # (a percentile bootstrap of 30 values runs a little under its level).
    series = rng.normal(5.0, 2.0, size=(300, 30))
    covered = [lo < 5.0 < hi for lo, hi in intervals([list(s) for s in series])]  # type: ignore[misc]
    assert 0.88 <= sum(covered) / len(covered) <= 0.99


def test_nested_intervals_cover_a_known_difference_over_sessions_and_repeats() -> None:
    """Each session moves both players alike (a market); the model's repeats and the
    baseline's single run are noisy: about 95% of the intervals hold the true edge, 1.0.
    The session effect cancels in the pairs; the noise of both sides does not."""
    rng = np.random.default_rng(5)
    series = []
    for _ in range(200):
        sessions = []
        for _ in range(10):
            market = rng.normal(0.0, 2.0)
            sessions.append((list(market + 1.0 + rng.normal(0.0, 1.0, 3)),
                             [float(market + rng.normal(0.0, 1.0))]))
        series.append(sessions)
    covered = [lo < 1.0 < hi for lo, hi in nested_intervals(series)]  # type: ignore[misc]
    assert 0.88 <= sum(covered) / len(covered) <= 0.99
    # One repeat a session: the sessions alone are resampled (their means' interval).
    means = [float(v) for v in rng.normal(size=6)]
    assert nested_intervals([[([v], ()) for v in means]])[0] == interval(means)
    # Stacked with series of other shapes or not, a series gets the same interval.
    two = [([1.0, 2.0, 3.0], [0.5]), ([2.0, 2.5, 4.0], [1.0])]
    other = [([5.0, 1.0], [0.1, 0.3]), ([0.0, 2.5], [3.0, 2.0]), ([1.0], [1.0])]
    assert nested_intervals([other, two, two])[1:] == nested_intervals([two]) * 2


def test_intervals_are_stable_and_the_same_alone_or_stacked() -> None:
    x, y = [1.0, 4.0, 2.5, 3.0], [10.0, -2.0, 7.0, 1.0]
    assert interval(x) == interval(x) == intervals([y, x])[1]
    assert interval([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert interval([3.0]) is None and interval([]) is None


def test_a_cell_over_its_repeats() -> None:
    returns = [1.0, 2.0, 4.5]
    c = compare(plays(*(run(1, DAYS[0], r, repeat=i) for i, r in enumerate(returns))))
    [cell] = c.cells
    s = cell.stats["return_pct"]
    assert (cell.player, cell.runs, cell.with_result, s.n) == ("alpha", 3, 3, 3)
    assert s.mean == pytest.approx(np.mean(returns))
    assert s.std == pytest.approx(np.std(returns, ddof=1))
    assert (s.ci_low, s.ci_high) == pytest.approx(interval(returns))
    assert s.ci_low <= s.mean <= s.ci_high  # type: ignore[operator]
    assert cell.stats["excess_return_pct"].mean == pytest.approx(np.mean(returns) - 0.5)
    # One session: the player's interval is the cell's.
    assert by_player(c)["alpha"].stats["return_pct"] == s


def test_a_single_run_has_no_interval() -> None:
    c = compare(plays(run(1, DAYS[0], 2.0), run(2, DAYS[0], 1.0)))
    s = c.cells[0].stats["return_pct"]
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high) == (1, 2.0, None, None, None)
    [d] = c.differences
    assert (d.player, d.versus, d.sessions, d.difference) == ("beta", "alpha", 1, -1.0)
    assert (d.ci_low, d.ci_high, d.excludes_zero, d.better) == (None, None, None, False)


def test_two_identical_players_differ_by_zero() -> None:
    runs = [run(m, day, 1.0 + i + 0.3 * k, repeat=k) for m in (1, 2)
            for i, day in enumerate(DAYS) for k in range(3)]
    c = compare(plays(*runs))
    [d] = c.differences
    assert d.sessions == 3 and d.difference == pytest.approx(0.0)
    assert d.ci_low <= 0.0 <= d.ci_high and d.excludes_zero is False  # type: ignore[operator]
    assert by_player(c)["alpha"].stats == by_player(c)["beta"].stats


def test_a_player_clearly_ahead_excludes_zero_on_sessions_and_on_repeats() -> None:
    rng = np.random.default_rng(3)
    runs = [run(m, day, float(rng.normal(2.0 if m == 1 else 0.0, 0.3)), repeat=k)
            for m in (1, 2) for day in DAYS for k in range(4)]
    c = compare(plays(*runs))
    assert [p.player for p in c.players] == ["alpha", "beta"]
    [d] = c.differences  # the others minus the leader
    assert (d.player, d.versus) == ("beta", "alpha")
    assert d.excludes_zero and not d.better and d.ci_high < 0  # type: ignore[operator]
    values = {(p.player, p.session): [q.values["return_pct"] for q in plays(*runs)
                                      if (q.player, q.session) == (p.player, p.session)]
              for p in plays(*runs)}
    pairs = [(values["alpha", str(day)], values["beta", str(day)]) for day in DAYS]
    ahead = difference(by_player(c)["alpha"].cells, by_player(c)["beta"].cells, "return_pct",
                       player="alpha", versus="beta")
    assert ahead.better and ahead.excludes_zero and ahead.sessions == 3
    assert ahead.difference == pytest.approx(np.mean([np.mean(a) - np.mean(b)
                                                      for a, b in pairs]))
    assert ahead.difference == pytest.approx(-d.difference)
    assert (ahead.ci_low, ahead.ci_high) == pytest.approx(nested_intervals([pairs])[0])
    assert ahead.ci_low < ahead.difference < ahead.ci_high  # type: ignore[operator]
    # One session: the repeats of both sides are resampled.
    one = compare(plays(*(r for r in runs if r.spec.date == DAYS[0])))
    assert one.differences[0].sessions == 1 and one.differences[0].excludes_zero


def test_a_player_absent_from_some_sessions_is_paired_on_the_others() -> None:
    runs = [run(1, day, 1.0 + i, repeat=k) for i, day in enumerate(DAYS) for k in range(2)]
    runs += [run(2, day, 0.5 + i + 0.1 * k, repeat=k) for i, day in enumerate(DAYS[:2])
             for k in range(2)]
    c = compare(plays(*runs), versus="alpha")
    alpha, beta = by_player(c)["alpha"], by_player(c)["beta"]
    assert (alpha.sessions, beta.sessions, beta.runs) == (3, 2, 4)
    # The player's mean is of its session means: (0.55 + 1.55) / 2.
    assert beta.stats["return_pct"].mean == pytest.approx(1.05)
    assert alpha.stats["return_pct"].mean == pytest.approx(2.0)
    [d] = c.differences
    assert (d.player, d.versus, d.sessions) == ("beta", "alpha", 2)
    assert d.difference == pytest.approx(-0.45)  # only the sessions both played
    assert compare(plays(*runs), versus="beta").differences[0].difference == pytest.approx(0.45)
    with pytest.raises(KeyError):
        compare(plays(*runs), versus="nobody")


def test_baselines_are_players_and_the_models_are_measured_against_them() -> None:
    runs = []
    for i, day in enumerate(DAYS):
        for k in range(3):
            runs.append(run(1, day, 2.0 + i + 0.1 * k, repeat=k))
            runs.append(run(1, day, -1.0 + 0.2 * k, repeat=k, decider="random",
                            baseline=True))
        runs.append(run(1, day, 1.5 + i, decider="buy_and_hold", baseline=True))
    c = compare(plays(*runs))
    players = by_player(c)
    assert set(players) == {"alpha", "random", "buy_and_hold"}
    assert players["random"].baseline and players["random"].model_id is None
    assert players["alpha"].model_id == 1 and not players["alpha"].baseline
    alpha = players["alpha"]
    assert alpha.beats_random.better and alpha.beats_random.excludes_zero
    assert alpha.beats_random.sessions == 3
    assert alpha.beats_buy_and_hold.difference == pytest.approx(0.6)
    assert alpha.beats_buy_and_hold.excludes_zero
    assert players["random"].beats_random is None
    assert players["buy_and_hold"].beats_buy_and_hold is None
    assert players["buy_and_hold"].beats_random.better
    cell = next(x for x in c.cells if x.player == "alpha" and x.session == str(DAYS[0]))
    assert cell.beats_random.sessions == 1 and cell.beats_random.excludes_zero
    # Buy-and-hold played once a session: a constant the model's repeats are set against.
    assert cell.beats_buy_and_hold.difference == pytest.approx(0.6)
    assert cell.beats_buy_and_hold.ci_low == pytest.approx(interval([2.0, 2.1, 2.2])[0] - 1.5)


def test_ranking_follows_the_metrics_direction_and_puts_missing_values_last() -> None:
    runs = [run(1, DAYS[0], 1.0, max_drawdown_pct=5.0), run(2, DAYS[0], 2.0,
                                                           max_drawdown_pct=1.0),
            run(3, DAYS[0], None, status=RunStatus.FAILED)]
    assert [p.player for p in compare(plays(*runs)).players] == ["beta", "alpha", "gamma"]
    c = compare(plays(*runs), Metric.MAX_DRAWDOWN_PCT)
    assert not c.higher_is_better
    assert [(p.rank, p.player) for p in c.players] == [(1, "beta"), (2, "alpha"), (3, "gamma")]


def test_only_completed_runs_count_and_marks_are_counted() -> None:
    runs = [run(1, DAYS[0], 1.0, contamination={"inside_training_data": True}),
            run(1, DAYS[0], 3.0, repeat=1, lookahead="2 items"),
            run(1, DAYS[0], 9.0, repeat=2, status=RunStatus.STOPPED),
            run(1, DAYS[1], 2.0, lookahead="possible",
                contamination={"inside_training_data": None})]
    c = compare(plays(*runs))
    alpha = by_player(c)["alpha"]
    assert (alpha.runs, alpha.with_result, alpha.sessions) == (4, 3, 2)
    assert alpha.stats["return_pct"].mean == pytest.approx((2.0 + 2.0) / 2)
    m = alpha.marks
    assert (m.contaminated_runs, m.lookahead_runs, m.lookahead_violation_runs,
            m.lookahead_possible_runs) == (1, 2, 1, 1)
    first = c.cells[0]
    assert (first.runs, first.with_result, first.marks.lookahead_runs) == (3, 2, 1)
    p = plays(*runs)
    assert [x.contaminated for x in p] == [True, None, None, None]


def test_values_read_the_result_then_its_metrics() -> None:
    result = {"return_pct": 1.5, "sharpe": None, "trades": 4, "benchmark": {"return_pct": 0.5},
              "metrics": {"sharpe": 1.2, "trades": 9, "fees": "2.50", "llm_cost": None,
                          "max_drawdown_recovered": True, "profit_factor": float("inf"),
                          "turnover": 0.8, "new_figure": 3}}
    assert values_of(result) == {"return_pct": 1.5, "trades": 4.0, "excess_return_pct": 1.0,
                                 "sharpe": 1.2, "fees": 2.5, "turnover": 0.8,
                                 "new_figure": 3.0}
    assert values_of({}) == {}
