"""Batches with repeats and baselines through real HTTP, on PostgreSQL + Redis and on
SQLite: each cell played `repeats` times with its own seed (the same for every model),
the baselines once per session, all completed in real runner processes; a replay of a
repeat reproduces its trades; and the LLM is sent the run's seed."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.eventlog import EventLog
from core.store import Store
from tests.apiserver import Backend, running_api, wait_status
from tests.factories import daily_spec
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_api_batches import models
from tests.integration.test_llm_decider import llm_run, llm_settings, play, session_for

pytestmark = pytest.mark.timeout(420)

DATES = ["2025-03-03", "2025-03-04"]
SEED = 500
BASELINES = {"buy_and_hold", "sma_crossover", "random"}


def trades_of(c: httpx.Client, run_id: int) -> list[tuple[Any, ...]]:
    r = c.get(f"/v1/runs/{run_id}/trades", params={"limit": 5000})
    assert r.status_code == 200, r.text
    return [(t["step"], t["seq"], t["side"], t["quantity"], t["price"], t["status"])
            for t in r.json()]


def ledger_return(c: httpx.Client, run: dict[str, Any]) -> float:
    """Return % from the run's own ledger: its last recorded equity against its cash."""
    decisions = c.get(f"/v1/runs/{run['id']}/decisions", params={"limit": 5000}).json()
    equity = [Decimal(d["equity"]) for d in decisions if d["equity"] is not None][-1]
    cash = Decimal(run["spec"]["initial_cash"])
    return float((equity / cash - 1) * 100)


def test_a_batch_with_repeats_and_baselines_plays_each_repeat_with_its_seed(
        backend: Backend) -> None:
    with running_api(backend, per_user=3) as api, api.client() as c:
        ids = models(c, "rep-a", "rep-b")  # no LLM: each plays the decider asked for
        r = c.post("/v1/batches", json={
            "name": "repeats", "model_ids": ids, "symbols": ["AAPL"], "dates": DATES,
            "repeats": 3, "seed": SEED, "decider": "random", "data": "synthetic"})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["runs"] == len(batch["run_ids"]) == 2 * 1 * 2 * 3 + 1 * 2 * 3
        assert batch["template"]["repeats"] == 3 and batch["template"]["baselines"] is True

        deadline = time.monotonic() + 360
        while not (done := c.get(f"/v1/batches/{batch['id']}").json())["finished"]:
            assert time.monotonic() < deadline, done["counts"]
            time.sleep(0.2)
        assert done["counts"] == {"completed": 18}
        page = c.get("/v1/runs", params={"batch_id": batch["id"], "limit": 100}).json()
        runs = sorted(page["items"], key=lambda run: run["id"])
        assert [run["id"] for run in runs] == batch["run_ids"]

        played = [run for run in runs if not run["spec"]["baseline"]]
        baselines = [run for run in runs if run["spec"]["baseline"]]
        assert len(played) == 12 and len(baselines) == 6
        # The models' runs first, in matrix order (model, date, repeat), then baselines.
        assert runs == played + baselines
        assert [(run["model_id"], run["spec"]["date"], run["spec"]["repeat"])
                for run in played] == [(m, d, k) for m in ids for d in DATES
                                       for k in range(3)]
        # Repeat k has seed SEED + k, whichever the model: distinct per repeat, equal
        # across models.
        for run in played:
            assert run["spec"]["seed"] == SEED + run["spec"]["repeat"]
            assert run["decider"] == "random" and run["status"] == "completed"
        for d in DATES:
            seeds = [[run["spec"]["seed"] for run in played
                      if run["model_id"] == m and run["spec"]["date"] == d] for m in ids]
            assert seeds[0] == seeds[1] == [SEED, SEED + 1, SEED + 2]

        # The baselines: once per session each, as runs of the first model, named by
        # their decider, on the batch's seed and options.
        assert Counter((run["spec"]["date"], run["decider"]) for run in baselines) == {
            (d, kind): 1 for d in DATES for kind in BASELINES}
        for run in baselines:
            spec = run["spec"]
            assert run["model_id"] == ids[0] and spec["decider"] == run["decider"]
            assert (spec["seed"], spec["repeat"], spec["data"]) == (SEED, 0, "synthetic")
            assert spec["decider_params"] == {} and spec["symbols"] == ["AAPL"]
            assert run["status"] == "completed"

        # Deterministic: repeat k of both models made the very same trades (same seed,
        # same bars, same decider), and so did the random baseline with repeat 0; each
        # repeat traded otherwise.
        trades = {run["id"]: trades_of(c, run["id"]) for run in runs}
        for d in DATES:
            cell = {(run["model_id"], run["spec"]["repeat"]): trades[run["id"]]
                    for run in played if run["spec"]["date"] == d}
            for k in range(3):
                assert cell[(ids[0], k)] == cell[(ids[1], k)] and cell[(ids[0], k)]
            assert len({tuple(cell[(ids[0], k)]) for k in range(3)}) == 3
            random_baseline = next(run for run in baselines if run["spec"]["date"] == d
                                   and run["decider"] == "random")
            assert trades[random_baseline["id"]] == cell[(ids[0], 0)]

        # The comparison, checked against the ledger: a cell's mean return is the mean of
        # its repeats' returns from their last recorded equity; its interval holds it.
        report = c.get(f"/v1/batches/{batch['id']}/compare").json()
        for d in DATES:
            from_ledger = [ledger_return(c, run) for run in played
                           if run["model_id"] == ids[0] and run["spec"]["date"] == d]
            [cell] = [x for x in report["cells"] if x["player"] == "rep-a"
                      and x["session"] == d]
            stat = cell["stats"]["return_pct"]
            assert stat["n"] == 3
            assert stat["mean"] == pytest.approx(sum(from_ledger) / 3, abs=1e-3)
            assert stat["ci_low"] <= stat["mean"] <= stat["ci_high"]
            assert cell["beats_random"] is not None
        assert {p["player"] for p in report["players"]} == {"rep-a", "rep-b"} | BASELINES

        # A replay of a repeat (the same seed and repeat: the same synthetic bars, drawn
        # from seed - repeat) reproduces it; one that would meet other bars is refused.
        source = next(run for run in played if run["spec"]["repeat"] == 2)
        replay_body = {"model_id": ids[1], "mode": "intraday", "symbols": ["AAPL"],
                       "date": source["spec"]["date"], "data": "synthetic",
                       "seed": source["spec"]["seed"], "repeat": 2, "decider": "replay",
                       "decider_params": {"source_run_id": source["id"]}}
        wrong = c.post("/v1/runs", json={**replay_body, "seed": SEED})
        assert wrong.status_code == 422, wrong.text
        assert f"synthetic seed {SEED} (this run: {SEED - 2})" in wrong.text
        replay = c.post("/v1/runs", json=replay_body)
        assert replay.status_code == 201, replay.text
        replayed = wait_status(c, replay.json()["id"], {"completed", "failed", "stopped"})
        assert replayed["status"] == "completed", replayed
        assert replayed["spec"]["repeat"] == 2 and not replayed["spec"]["baseline"]
        assert trades_of(c, replayed["id"]) == trades[source["id"]]
        assert replayed["result"]["return_pct"] == source["result"]["return_pct"]

        # The stored template says what was asked; without baselines, only the matrix.
        plain = c.post("/v1/batches", json={
            "model_ids": ids, "symbols": ["AAPL"], "dates": DATES[:1], "repeats": 2,
            "baselines": False, "decider": "buy_and_hold", "data": "synthetic"})
        assert plain.status_code == 201 and plain.json()["runs"] == 4, plain.text
        c.post(f"/v1/batches/{plain.json()['id']}/stop")


def test_the_run_cap_counts_repeats_and_baselines(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c:
        ids = models(c, *(f"cap-{i}" for i in range(5)))
        body = {"model_ids": ids, "symbols": ["AAPL", "MSFT"], "dates": DATES,
                "decider": "random", "data": "synthetic"}
        # 5 models x 3 symbols x 2 dates x 20 repeats = 600, + 3 x 3 x 2 baselines.
        over = c.post("/v1/batches", json={**body, "repeats": 20,
                                           "symbols": ["AAPL", "MSFT", "IBM"]})
        assert over.status_code == 422, over.text
        assert "618 runs" in over.json()["detail"] and "at most 500" in over.json()["detail"]
        high = c.post("/v1/batches", json={**body, "repeats": 3, "seed": 2**31 - 2})
        assert high.status_code == 422 and "lower seed" in high.json()["detail"], high.text
        for bad in ({"repeats": 0}, {"repeats": 21}, {"repeats": "2"}, {"baselines": "yes"}):
            r = c.post("/v1/batches", json={**body, **bad})
            assert r.status_code == 422, (bad, r.text)
        assert c.get("/v1/batches").json()["items"] == []  # nothing stored
        baseline_llm = c.post("/v1/runs", json={
            "model_id": ids[0], "mode": "intraday", "symbols": ["AAPL"], "date": DATES[0],
            "data": "synthetic", "baseline": True})
        assert baseline_llm.status_code == 422 and "baseline run plays" in baseline_llm.text


def test_an_llm_run_sends_its_seed_to_the_provider(store: Store, event_log: EventLog,
                                                  fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/gpt-4.1-mini", daily_spec(
        start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 5), decider="llm", seed=1234,
        repeat=4))
    play(session_for(store, event_log, run, llm_settings(fake, api_key)))
    requests = fake.requests_for("gpt-4.1-mini")
    assert requests and {r.body.get("seed") for r in requests} == {1234}


def test_a_batch_sets_blind_against_open_runs_of_the_same_model(backend: Backend) -> None:
    """`blind_and_open`: every model cell is played open and blind, on the same seeds
    (the same bars); the baselines never blind; the comparison has both players."""
    with running_api(backend) as api, api.client() as c:
        [model] = models(c, "memory")
        r = c.post("/v1/batches", json={
            "model_ids": [model], "symbols": ["AAPL"], "dates": DATES[:1], "repeats": 2,
            "seed": SEED, "decider": "random", "data": "synthetic", "blind_and_open": True})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["runs"] == 2 * 2 + 3
        runs = [c.get(f"/v1/runs/{i}").json() for i in batch["run_ids"]]
        ways = [(run["spec"].get("blind", False), run["spec"]["seed"]) for run in runs
                if not run["spec"].get("baseline")]
        assert ways == [(False, SEED), (False, SEED + 1), (True, SEED), (True, SEED + 1)]
        assert all(not run["spec"].get("blind") for run in runs if run["spec"].get("baseline"))
        deadline = time.monotonic() + 240
        while not c.get(f"/v1/batches/{batch['id']}").json()["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        report = c.get(f"/v1/batches/{batch['id']}/compare").json()
        players = {p["player"] for p in report["players"]}
        assert {"memory", "memory (blind)", "random"} <= players
        # The cap counts both ways: 12 symbols x (20 repeats x 2 ways + 3 baselines) = 516.
        body = {"model_ids": [model], "symbols": [f"S{chr(65 + i)}" for i in range(12)],
                "dates": DATES[:1], "repeats": 20, "seed": SEED, "data": "synthetic"}
        over = c.post("/v1/batches", json={**body, "blind_and_open": True})
        assert over.status_code == 422 and "would make 516 runs" in over.text, over.text
