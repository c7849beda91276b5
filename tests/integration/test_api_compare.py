"""Comparisons through real HTTP, on PostgreSQL + Redis and on SQLite: a batch of 2 models x
2 sessions x 3 repeats beside its baselines, its runs finished with results made here, so
every figure of GET /v1/batches/{id}/compare and GET /v1/leaderboard can be computed from
the stored results and checked; a bad metric is a 422 naming the metrics."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from scipy import stats

from api.comparison import BATCH, CONFIDENCE, RESAMPLES, SEED, nested_intervals
from core.lifecycle import Lifecycle
from core.spec import RunSpec
from core.status import RunStatus
from core.store import BatchRun, Store
from tests.apiserver import Backend, running_api
from tests.factories import run_status
from tests.integration.test_api_batches import models

pytestmark = pytest.mark.timeout(300)

DAYS = ("2025-03-03", "2025-03-04")
REPEATS = 3
# Baselines: random and buy-and-hold with every repeat, sma_crossover once a session.
BASELINES = {"random": REPEATS, "buy_and_hold": REPEATS, "sma_crossover": 1}


def spec(day: str, repeat: int, decider: str, *, baseline: bool = False) -> RunSpec:
    return RunSpec.model_validate({
        "mode": "intraday", "symbols": ["AAPL"], "date": day, "decider": decider,
        "data": "synthetic", "seed": 7 + repeat, "repeat": repeat, "baseline": baseline})


def result(rng: np.random.Generator, base: float, day: str, **extra: Any) -> dict[str, Any]:
    ret = round(float(rng.normal(base, 0.4)), 4)
    return {
        "return_pct": ret, "max_drawdown_pct": round(float(rng.uniform(0.1, 3.0)), 4),
        "sharpe": round(float(rng.normal(base, 1.0)), 4), "trades": int(rng.integers(0, 30)),
        "win_rate": round(float(rng.uniform(0, 1)), 4), "tokens_in": 1000, "tokens_out": 100,
        "cost": "0.0125", "benchmark": {"return_pct": 0.25 if day == DAYS[0] else -0.5},
        "lookahead": "clean",
        "metrics": {"sortino": round(float(rng.normal(base, 1.5)), 4),
                    "volatility_pct": round(float(rng.uniform(5, 20)), 4), "fees": "1.50",
                    "max_drawdown_recovered": bool(rng.integers(0, 2)), "llm_cost": None},
        "contamination": {"inside_training_data": False}, **extra}


def make_batch(store: Store, user: str, ids: list[int]) -> tuple[int, dict[int, str]]:
    """The batch as POST /v1/batches makes one with repeats and baselines (baselines on
    the first model), finished with results: each model a little better than the next,
    random below them all. One more run of beta is stopped (not counted). Returns the
    batch id and each run's player."""
    cells: list[tuple[BatchRun, str, float]] = []
    for model_id, name, base in zip(ids, ("alpha", "beta"), (2.0, 1.0), strict=True):
        cells += [(BatchRun(model_id, spec(day, k, "sma_crossover"), 390), name, base)
                  for day in DAYS for k in range(REPEATS)]
    for decider, repeats in BASELINES.items():
        base = {"random": -1.0, "buy_and_hold": 0.0, "sma_crossover": 0.5}[decider]
        cells += [(BatchRun(ids[0], spec(day, k, decider, baseline=True), 390), decider, base)
                  for day in DAYS for k in range(repeats)]
    cells.append((BatchRun(ids[1], spec(DAYS[1], REPEATS, "sma_crossover"), 390), "beta",
                  50.0))
    batch, runs, _ = store.create_batch(user, "cmp", {"made": "by the test"},
                                        [c for c, _, _ in cells])
    rng = np.random.default_rng(11)
    lifecycle, writes = Lifecycle(store), run_status(store)
    for i, (run, (_, _, base)) in enumerate(zip(runs, cells, strict=True)):
        day = str(run.spec.date)
        extra: dict[str, Any] = {}
        if i == 0:
            extra = {"contamination": {"inside_training_data": True}}
        elif i == 1:
            extra = {"lookahead": "possible"}
        elif i == 2:
            extra = {"lookahead": "3 items"}
        stopped = i == len(runs) - 1
        running = writes.transition(run.id, RunStatus.ADMITTED)
        final = lifecycle.finish(running, RunStatus.STOPPED if stopped else RunStatus.COMPLETED,
                                 None, result=result(rng, base, day, **extra))
        assert final is not None
    return batch.id, {r.id: name for r, (_, name, _) in zip(runs, cells, strict=True)}


def boot(*samples: list[float]) -> tuple[float, float]:
    """The interval the API promises, computed here with scipy directly."""
    def statistic(*xs: Any, axis: int = -1) -> Any:
        return np.mean(xs[0], axis=axis) - (np.mean(xs[1], axis=axis) if len(xs) > 1 else 0)
    ci = stats.bootstrap(samples, statistic, confidence_level=CONFIDENCE, paired=False,
                         n_resamples=RESAMPLES, method="percentile", vectorized=True,
                         batch=BATCH, rng=np.random.default_rng(SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def figures(run: dict[str, Any], metric: str) -> float | None:
    r = run["result"]
    if metric == "excess_return_pct":
        return float(r["return_pct"]) - float(r["benchmark"]["return_pct"])
    if metric in r:
        return None if r[metric] is None else float(r[metric])
    value = r["metrics"].get(metric)
    return None if value is None else float(Decimal(str(value)))


def test_compare_and_leaderboard_from_the_stored_results(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c, \
            api.client("user-b") as b:
        ids = models(c, "alpha", "beta")
        batch_id, players = make_batch(api.services.store, "user-a", ids)
        runs = {r["id"]: r for r in c.get("/v1/runs", params={"batch_id": batch_id,
                                                                "limit": 100}).json()["items"]}
        assert len(runs) == 2 * 2 * 3 + 2 * 7 + 1 == len(players)

        r = c.get(f"/v1/batches/{batch_id}/compare")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["metric"] == "return_pct" and report["higher_is_better"]
        assert report["confidence"] == 0.95 and "bootstrap" in report["method"]

        # Rows: one a run, ranked by return, each the run's own figures.
        rows = report["rows"]
        assert [row["rank"] for row in rows] == list(range(1, len(runs) + 1))
        assert [row["return_pct"] for row in rows] == sorted(
            (row["return_pct"] for row in rows), reverse=True)
        for row in rows:
            run = runs[row["run_id"]]
            res = run["result"]
            assert row["player"] == players[row["run_id"]]
            assert row["baseline"] == (row["player"] not in ("alpha", "beta"))
            assert row["model"] == ("alpha" if run["model_id"] == ids[0] else "beta")
            assert (row["repeat"], row["seed"]) == (run["spec"]["repeat"], run["spec"]["seed"])
            assert row["counted"] == (run["status"] == "completed")
            for key in ("return_pct", "max_drawdown_pct", "sharpe", "trades", "win_rate",
                        "lookahead"):
                assert row[key] == res[key], key
            assert row["excess_return_pct"] == pytest.approx(
                res["return_pct"] - res["benchmark"]["return_pct"], abs=1e-4)
            assert row["contaminated"] == res["contamination"]["inside_training_data"]
            assert row["metrics"]["fees"] == 1.5 and "max_drawdown_recovered" not in \
                row["metrics"]

        # Cells: each metric over the completed repeats of a player on a session.
        # In run order, as the API reads them: a bootstrap's resamples are drawn by
        # position.
        counted = [runs[i] for i in sorted(runs) if runs[i]["status"] == "completed"]
        repeats: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for run in counted:
            repeats[players[run["id"]], run["spec"]["date"]].append(run)
        cells = {(cell["player"], cell["session"]): cell for cell in report["cells"]}
        assert set(cells) == set(repeats)
        for key, mine in repeats.items():
            cell = cells[key]
            assert cell["with_result"] == len(mine) and cell["symbol"] == "AAPL"
            assert cell["runs"] == len(mine) + (key == ("beta", DAYS[1]))
            for metric in ("return_pct", "sharpe", "max_drawdown_pct", "sortino",
                           "volatility_pct", "excess_return_pct", "fees"):
                values = [figures(run, metric) for run in mine]
                s = cell["stats"][metric]
                assert s["n"] == len(values) and s["mean"] == pytest.approx(np.mean(values))
                if len(values) == 1:
                    assert (s["std"], s["ci_low"], s["ci_high"]) == (None, None, None)
                    continue
                assert s["std"] == pytest.approx(np.std(values, ddof=1))
                if np.ptp(values) == 0:
                    assert s["ci_low"] == s["ci_high"] == values[0]
                else:
                    assert (s["ci_low"], s["ci_high"]) == pytest.approx(boot(values))
            assert "llm_cost" not in cell["stats"]  # null in every result

        # Players: the mean of their session means, with the nested interval (sessions,
        # then repeats) of api.comparison over the stored figures.
        def session_values(player: str, metric: str = "return_pct") -> list[list[float]]:
            return [[figures(r, metric) for r in repeats[player, day]]  # type: ignore[misc]
                    for day in DAYS]

        def session_means(player: str, metric: str = "return_pct") -> list[float]:
            return [float(np.mean(v)) for v in session_values(player, metric)]

        def nested(player: str, versus: str | None = None, metric: str = "return_pct"
                   ) -> tuple[float, float]:
            theirs = session_values(versus, metric) if versus else [[] for _ in DAYS]
            ci = nested_intervals([list(zip(session_values(player, metric), theirs,
                                            strict=True))])[0]
            assert ci is not None
            return ci

        by_player = {p["player"]: p for p in report["players"]}
        assert [p["player"] for p in report["players"]] == [
            "alpha", "beta", "sma_crossover", "buy_and_hold", "random"]
        for name, p in by_player.items():
            means = session_means(name)
            s = p["stats"]["return_pct"]
            assert s["mean"] == pytest.approx(np.mean(means)) and s["n"] == sum(
                len(repeats[name, day]) for day in DAYS)
            assert (s["ci_low"], s["ci_high"]) == pytest.approx(nested(name))
            assert s["ci_low"] < s["mean"] < s["ci_high"]
            assert p["sessions"] == 2 and p["baseline"] == (name not in ("alpha", "beta"))
            assert p["model_id"] == {"alpha": ids[0], "beta": ids[1]}.get(name)
        alpha, beta = by_player["alpha"], by_player["beta"]
        assert (alpha["runs"], alpha["with_result"], beta["runs"], beta["with_result"]) == (
            6, 6, 7, 6)
        assert Decimal(alpha["total_cost"]) == Decimal("0.075")  # 6 runs of $0.0125
        assert alpha["mean_return_pct"] == pytest.approx(np.mean(session_means("alpha")),
                                                         abs=1e-4)
        # The first three runs are alpha's: contaminated, look-ahead possible, 3 items.
        assert (alpha["contaminated_runs"], alpha["lookahead_runs"],
                alpha["lookahead_possible_runs"], alpha["lookahead_violation_runs"]) == (
            1, 2, 1, 1)
        assert (beta["contaminated_runs"], beta["lookahead_runs"]) == (0, 0)

        # Against the baselines, paired by session; and each player minus the leader.
        for name in ("alpha", "beta", "sma_crossover"):
            for field, baseline in (("beats_random", "random"),
                                    ("beats_buy_and_hold", "buy_and_hold")):
                d = by_player[name][field]
                diffs = list(np.subtract(session_means(name), session_means(baseline)))
                assert d["versus"] == baseline and d["sessions"] == 2
                assert d["difference"] == pytest.approx(np.mean(diffs))
                assert (d["ci_low"], d["ci_high"]) == pytest.approx(nested(name, baseline))
                assert d["excludes_zero"] == (d["ci_low"] > 0 or d["ci_high"] < 0)
                assert d["better"] == (d["difference"] > 0)
        assert alpha["beats_random"]["better"] and alpha["beats_random"]["excludes_zero"]
        assert by_player["random"]["beats_random"] is None
        cell = cells["alpha", DAYS[0]]["beats_random"]
        alpha_day = [figures(r, "return_pct") for r in repeats["alpha", DAYS[0]]]
        random_day = [figures(r, "return_pct") for r in repeats["random", DAYS[0]]]
        assert cell["sessions"] == 1
        assert cell["difference"] == pytest.approx(np.mean(alpha_day) - np.mean(random_day))
        assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(boot(alpha_day, random_day))
        assert report["versus"] == "alpha"
        assert [d["player"] for d in report["differences"]] == [
            p["player"] for p in report["players"][1:]]
        versus = c.get(f"/v1/batches/{batch_id}/compare",
                       params={"metric": "sharpe", "versus": "random"}).json()
        assert versus["versus"] == "random" and versus["metric"] == "sharpe"
        d = {x["player"]: x for x in versus["differences"]}["beta"]
        diffs = list(np.subtract(session_means("beta", "sharpe"),
                                 session_means("random", "sharpe")))
        assert d["difference"] == pytest.approx(np.mean(diffs))
        assert [p["stats"]["sharpe"]["mean"] for p in versus["players"]] == sorted(
            (p["stats"]["sharpe"]["mean"] for p in versus["players"]), reverse=True)

        # The leaderboard: every batch of mine, or one; ranked by the metric.
        board = c.get("/v1/leaderboard", params={"metric": "sharpe"})
        assert board.status_code == 200, board.text
        entries = board.json()["entries"]
        assert board.json()["batch_id"] is None and board.json()["metric"] == "sharpe"
        means = {e["player"]: e["value"]["mean"] for e in entries}
        assert list(means.values()) == sorted(means.values(), reverse=True)
        assert [e["rank"] for e in entries] == [1, 2, 3, 4, 5]
        for e in entries:
            sharpe = session_means(e["player"], "sharpe")
            assert e["value"]["mean"] == pytest.approx(np.mean(sharpe))
            assert (e["value"]["ci_low"], e["value"]["ci_high"]) == pytest.approx(
                nested(e["player"], metric="sharpe"))
            assert e["batches"] == [batch_id] and e["sessions"] == 2
        first = {e["player"]: e for e in entries}["alpha"]
        assert (first["runs"], first["with_result"], first["contaminated_runs"],
                first["lookahead_possible_runs"], first["lookahead_violation_runs"]) == (
            6, 6, 1, 1, 1)
        drawdown = c.get("/v1/leaderboard", params={"metric": "max_drawdown_pct",
                                                    "batch_id": batch_id}).json()
        assert drawdown["batch_id"] == batch_id and not drawdown["higher_is_better"]
        lows = [e["value"]["mean"] for e in drawdown["entries"]]
        assert lows == sorted(lows)  # least drawdown first
        default = c.get("/v1/leaderboard").json()
        assert default["metric"] == "sharpe" and default["entries"] == entries

        # Errors: a metric that is none, a player that is none; someone else's batch.
        bad = c.get("/v1/leaderboard", params={"metric": "luck"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "metric" in bad.json()["detail"] and "sharpe" in bad.json()["detail"] \
            and "return_pct" in bad.json()["detail"], bad.json()
        assert c.get(f"/v1/batches/{batch_id}/compare",
                     params={"metric": "luck"}).status_code == 422
        nobody = c.get(f"/v1/batches/{batch_id}/compare", params={"versus": "nobody"})
        assert nobody.status_code == 422 and "nobody" in nobody.json()["detail"]
        assert b.get("/v1/leaderboard").json()["entries"] == []
        assert b.get("/v1/leaderboard", params={"batch_id": batch_id}).status_code == 404
        assert b.get(f"/v1/batches/{batch_id}/compare").status_code == 404


def test_a_second_batch_adds_repeats_to_the_same_sessions(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c:
        ids = models(c, "alpha", "beta")
        store = api.services.store
        first, _ = make_batch(store, "user-a", ids)
        second, _ = make_batch(store, "user-a", ids)
        one = {e["player"]: e for e in c.get("/v1/leaderboard", params={
            "metric": "return_pct", "batch_id": first}).json()["entries"]}
        both = {e["player"]: e for e in c.get("/v1/leaderboard", params={
            "metric": "return_pct"}).json()["entries"]}
        assert both["alpha"]["runs"] == 2 * one["alpha"]["runs"] == 12
        assert both["alpha"]["sessions"] == one["alpha"]["sessions"] == 2
        assert both["alpha"]["batches"] == [first, second]
        assert both["alpha"]["value"]["n"] == 12
