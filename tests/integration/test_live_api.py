"""Live runs through the API: one run, a batch of models side by side, a schedule that
fires them; what each is given (the session live now, the close fill rule, the
configured provider) and what is refused with its reason (nothing stored)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr

from core import calendar
from core.marketdata.settings import MarketDataSettings
from tests.apiserver import Backend, running_api
from tests.integration.test_api_batches import batch_runs
from tests.integration.test_api_runs import create_model
from tests.integration.test_api_schedules import assert_problem, create_schedule

ALPACA = MarketDataSettings(alpaca_api_key_id=SecretStr("PKAPILIVE0123456789A"),
                            alpaca_api_secret_key=SecretStr("api-live-secret-0123456789"))


def live_run(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"model_id": model_id, "mode": "intraday", "symbols": ["AAPL"],
            "decider": "sma_crossover", "live": {}, **kw}


def today_live() -> str:
    return calendar.live_session(dt.datetime.now(dt.UTC)).isoformat()


def test_a_live_run_gets_the_session_live_now_and_bad_ones_are_refused(
        backend: Backend) -> None:
    with running_api(backend, reconcile=False, market_data=ALPACA) as api, api.client() as c:
        model = create_model(c)
        r = c.post("/v1/runs", json=live_run(model, live={"broker": "alpaca_paper"}))
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert (spec["date"], spec["data"], spec["fill"]) == (today_live(), "alpaca", "close")
        assert spec["live"] == {"broker": "alpaca_paper", "feed": "iex",
                                "decision_deadline_seconds": 45.0, "flatten_on_stop": False}
        past = calendar.previous_sessions(dt.date.fromisoformat(today_live()), 1)[0]
        assert_problem(c.post("/v1/runs", json=live_run(model, date=past.isoformat())), 422,
                       f"a live run plays the session live now, {today_live()}")
        assert_problem(c.post("/v1/runs", json=live_run(model, data="synthetic")), 422,
                       "a live run's bars come from a provider's stream")
        assert_problem(c.post("/v1/runs", json=live_run(model, fill="next_open")), 422,
                       "a live run fills at the decision bar's close")
        assert_problem(c.post("/v1/runs", json=live_run(model, mode="daily")), 422)
        assert len(c.get("/v1/runs").json()["items"]) == 1
    with running_api(backend, reconcile=False) as api, api.client("user-b") as c:
        assert_problem(c.post("/v1/runs", json=live_run(create_model(c))), 422,
                       "a live run streams its bars from a provider", "is not configured")


def test_a_batch_runs_models_live_side_by_side_and_a_schedule_fires_live_runs(
        backend: Backend) -> None:
    with running_api(backend, reconcile=False, market_data=ALPACA) as api, api.client() as c:
        models = [create_model(c, name) for name in ("alpha", "beta")]
        r = c.post("/v1/batches", json={"model_ids": models, "symbols": ["AAPL", "MSFT"],
                                        "decider": "sma_crossover", "baselines": False,
                                        "live": {"broker": "sim"}})
        assert r.status_code == 201, r.text
        runs = batch_runs(c, r.json()["id"])
        assert len(runs) == 4
        assert {(x["spec"]["date"], x["spec"]["fill"], x["spec"]["live"]["broker"])
                for x in runs} == {(today_live(), "close", "sim")}
        schedule = create_schedule(c, {
            "model_id": models[0], "cron": "25 9 * * 1-5", "mode": "intraday",
            "symbols": ["AAPL"], "decider": "sma_crossover", "live": {}})
        assert schedule["template"]["session"] == "today"
        assert schedule["template"]["fill"] == "close" and schedule["template"]["live"]
        assert_problem(c.post("/v1/schedules", json={
            "model_id": models[0], "cron": "25 9 * * 1-5", "mode": "intraday",
            "symbols": ["AAPL"], "session": "last_closed", "live": {}}), 422,
            "a live schedule plays the fire's own session")
