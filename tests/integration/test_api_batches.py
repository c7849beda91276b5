"""Batches through real HTTP, on PostgreSQL + Redis and on SQLite: a matrix of runs made in
one request, admitted under the same limits, stopped as one, compared from the runs' own
results."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.apiserver import Backend, running_api, wait_for

pytestmark = pytest.mark.timeout(300)

SLOW = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.03"}  # 390 steps take ~12 s: time to act
ACTIVE = {"admitted", "running", "stopping"}
FINAL = {"completed", "failed", "stopped"}


def models(c: httpx.Client, *names: str) -> list[int]:
    ids = []
    for name in names:
        r = c.post("/v1/models", json={"signature": name})
        assert r.status_code == 201, r.text
        ids.append(int(r.json()["id"]))
    return ids


def intraday_batch(model_ids: list[int], **kw: Any) -> dict[str, Any]:
    return {"name": "matrix", "model_ids": model_ids, "symbols": ["AAPL", "MSFT"],
            "dates": ["2025-03-03", "2025-03-04"], "decider": "sma_crossover",
            "data": "synthetic", "decider_params": {"fast": 3, "slow": 10},
            "baselines": False, **kw}  # the matrix alone (baselines: test_batch_repeats)


def daily_batch(model_ids: list[int], **kw: Any) -> dict[str, Any]:
    return {"model_ids": model_ids, "symbols": ["MSFT"],
            "ranges": [{"start": "2024-01-02", "end": "2024-02-29"}],
            "decider": "buy_and_hold", "data": "synthetic", "baselines": False, **kw}


def batch_runs(c: httpx.Client, batch_id: int) -> list[dict[str, Any]]:
    page = c.get("/v1/runs", params={"batch_id": batch_id, "limit": 500})
    assert page.status_code == 200, page.text
    return list(page.json()["items"])


def test_a_3x2x2_batch_runs_within_the_limits_and_compares_its_runs(backend: Backend
                                                                     ) -> None:
    with running_api(backend, per_user=2) as api, api.client() as c:
        ids = models(c, "alpha", "beta", "gamma")
        r = c.post("/v1/batches", json=intraday_batch(ids))
        assert r.status_code == 201, r.text
        batch = r.json()
        assert r.headers["Location"] == f"/v1/batches/{batch['id']}"
        assert batch["runs"] == 12 and len(batch["run_ids"]) == 12
        assert batch["progress"] == {"steps_done": 0, "steps_total": 12 * 390}

        most_active = 0
        deadline = time.monotonic() + 240
        while True:
            runs = batch_runs(c, batch["id"])
            most_active = max(most_active, sum(r["status"] in ACTIVE for r in runs))
            if all(r["status"] in FINAL for r in runs):
                break
            assert time.monotonic() < deadline, [r["status"] for r in runs]
            time.sleep(0.1)
        assert 1 <= most_active <= 2  # the per-user limit held across the batch

        runs = {r["id"]: r for r in runs}
        assert sorted(runs) == sorted(batch["run_ids"])
        assert {r["status"] for r in runs.values()} == {"completed"}
        assert {(r["model_id"], r["spec"]["symbols"][0], r["spec"]["date"])
                for r in runs.values()} == {(m, s, d) for m in ids for s in ("AAPL", "MSFT")
                                            for d in ("2025-03-03", "2025-03-04")}
        assert all(r["batch_id"] == batch["id"] for r in runs.values())
        done = c.get(f"/v1/batches/{batch['id']}").json()
        assert done["finished"] and done["counts"] == {"completed": 12}
        assert done["progress"] == {"steps_done": 12 * 390, "steps_total": 12 * 390}

        report = c.get(f"/v1/batches/{batch['id']}/compare").json()
        rows = report["rows"]
        assert [row["rank"] for row in rows] == list(range(1, 13))
        returns = [row["return_pct"] for row in rows]
        assert returns == sorted(returns, reverse=True)
        signatures = dict(zip(ids, ("alpha", "beta", "gamma"), strict=True))
        for row in rows:
            run = runs[row["run_id"]]
            result = run["result"]
            assert row["model"] == signatures[run["model_id"]]
            assert (row["symbol"], row["session"]) == (run["spec"]["symbols"][0],
                                                      run["spec"]["date"])
            for key in ("return_pct", "max_drawdown_pct", "sharpe", "trades", "win_rate",
                        "tokens_in", "tokens_out"):
                assert row[key] == result[key], key
            assert row["cost"] == result["cost"]
            assert row["benchmark_return_pct"] == result["benchmark"]["return_pct"]
            assert row["excess_return_pct"] == pytest.approx(
                result["return_pct"] - result["benchmark"]["return_pct"], abs=1e-4)
        assert any(row["trades"] for row in rows)
        # No baselines in this batch: a player is a model (test_api_compare has the rest).
        assert {row["player"] for row in rows} == {"alpha", "beta", "gamma"}
        by_model = {p["model_id"]: p for p in report["players"]}
        assert set(by_model) == set(ids)
        for model_id, summary in by_model.items():
            mine = [runs[row["run_id"]]["result"] for row in rows
                    if runs[row["run_id"]]["model_id"] == model_id]
            assert summary["player"] == signatures[model_id] and not summary["baseline"]
            assert summary["runs"] == summary["with_result"] == 4 == summary["sessions"]
            assert summary["mean_return_pct"] == pytest.approx(
                sum(r["return_pct"] for r in mine) / 4, abs=1e-4)
            stat = summary["stats"]["return_pct"]
            assert stat["n"] == 4 and stat["ci_low"] <= stat["mean"] <= stat["ci_high"]
            assert summary["beats_random"] is None  # no random baseline played
        means = [p["mean_return_pct"] for p in report["players"]]
        assert means == sorted(means, reverse=True)
        assert [p["rank"] for p in report["players"]] == [1, 2, 3]


def test_stopping_a_batch_stops_every_run(backend: Backend) -> None:
    with running_api(backend, per_user=2, runner_env=SLOW) as api, api.client() as c:
        batch = c.post("/v1/batches", json=intraday_batch(models(c, "slow"))).json()
        assert batch["runs"] == 4
        wait_for(lambda: any(r["progress"]["step"] >= 5 for r in batch_runs(c, batch["id"])))
        r = c.post(f"/v1/batches/{batch['id']}/stop")
        assert r.status_code == 202, r.text
        assert set(r.json()["stopping"]) <= set(batch["run_ids"]) and r.json()["stopping"]

        wait_for(lambda: c.get(f"/v1/batches/{batch['id']}").json()["finished"], timeout=60)
        runs = batch_runs(c, batch["id"])
        assert {r["status"] for r in runs} == {"stopped"}
        started = [r for r in runs if r["attempts"]]
        assert started and all(r["progress"]["step"] < 390 for r in started)
        for never in (r for r in runs if not r["attempts"]):
            assert never["status_reason"] == "stopped before it started"
        assert c.post(f"/v1/batches/{batch['id']}/stop").json() == {"stopping": []}
        statuses = {row["status"] for row in
                    c.get(f"/v1/batches/{batch['id']}/compare").json()["rows"]}
        assert statuses == {"stopped"}


def test_a_bad_cell_refuses_the_whole_batch(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c:
        ids = models(c, "m1", "m2")
        holiday = c.post("/v1/batches", json=intraday_batch(
            ids, dates=["2025-03-03", "2025-01-01"]))
        assert holiday.status_code == 422, holiday.text
        assert holiday.headers["content-type"].startswith("application/problem+json")
        assert "2025-01-01" in holiday.json()["detail"] and "AAPL" in holiday.json()["detail"]
        backwards = c.post("/v1/batches", json=daily_batch(
            ids, ranges=[{"start": "2024-03-01", "end": "2024-02-01"}]))
        assert backwards.status_code == 422 and "before" in backwards.json()["detail"]
        unknown = c.post("/v1/batches", json=intraday_batch([ids[0], 999]))
        assert unknown.status_code == 422 and "999" in unknown.json()["detail"]
        too_big = c.post("/v1/batches", json=intraday_batch(
            list(range(1, 51)), symbols=["AAPL", "MSFT", "IBM", "GE", "F", "T"]))
        assert too_big.status_code == 422 and "at most 500" in too_big.json()["detail"]
        both = c.post("/v1/batches", json={**intraday_batch(ids), "ranges": [
            {"start": "2024-01-02", "end": "2024-01-31"}]})
        assert both.status_code == 422 and "either" in both.json()["detail"]
        twice = c.post("/v1/batches", json=intraday_batch([ids[0], ids[0]]))
        assert twice.status_code == 422 and "distinct" in twice.json()["detail"]
        assert c.get("/v1/runs").json()["items"] == []
        assert c.get("/v1/batches").json() == {"items": [], "next_cursor": None}


def test_batches_are_private_and_idempotent(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as a, \
            api.client("user-b") as b:
        ids = models(a, "mine", "also-mine")
        key = {"Idempotency-Key": "batch-1"}
        first = a.post("/v1/batches", json=daily_batch(ids), headers=key)
        assert first.status_code == 201, first.text
        again = a.post("/v1/batches", json=daily_batch(ids), headers=key)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert (again.json()["id"], again.json()["run_ids"]) == (first.json()["id"],
                                                                 first.json()["run_ids"])
        other = a.post("/v1/batches", json=daily_batch(ids, seed=7), headers=key)
        assert other.status_code == 409
        assert len(a.get("/v1/runs").json()["items"]) == 2

        batch_id = first.json()["id"]
        for path in (f"/v1/batches/{batch_id}", f"/v1/batches/{batch_id}/compare"):
            assert b.get(path).status_code == 404
        assert b.post(f"/v1/batches/{batch_id}/stop").status_code == 404
        assert b.get("/v1/batches").json()["items"] == []
        assert b.get("/v1/runs", params={"batch_id": batch_id}).json()["items"] == []
        # Their model is not a model of mine: the batch is refused, not made.
        assert b.post("/v1/batches", json=daily_batch(ids)).status_code == 422

        second = a.post("/v1/batches", json=daily_batch(ids[:1])).json()
        page = a.get("/v1/batches", params={"limit": 1}).json()
        assert [x["id"] for x in page["items"]] == [second["id"]] and page["next_cursor"]
        rest = a.get("/v1/batches", params={"limit": 1, "cursor": page["next_cursor"]}).json()
        assert [x["id"] for x in rest["items"]] == [batch_id] and rest["next_cursor"] is None
        queued = a.get(f"/v1/batches/{batch_id}").json()
        assert queued["counts"] == {"queued": 2} and not queued["finished"]
        stopped = a.post(f"/v1/batches/{batch_id}/stop").json()
        assert sorted(stopped["stopping"]) == sorted(first.json()["run_ids"])
        assert a.get(f"/v1/batches/{batch_id}").json()["counts"] == {"stopped": 2}
