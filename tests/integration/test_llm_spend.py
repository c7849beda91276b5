"""LLM spend: run budgets that stop a run, a user's daily limit at admission and during
runs, and GET /v1/usage. The llm decider talks HTTP to the local OpenAI-compatible
server through the real ChatOpenAI client; runs are played by the runner's own entry
(play_run), so the budget's wiring is what production runs."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

import pytest

from core.eventlog import EventLog
from core.exitcodes import EXIT_OK
from core.records import Decision, Run
from core.spend import DailyLimit, SpendSettings, day_window, utc_day
from core.status import RunStatus
from core.store import Store
from runner.app import RunnerDeps, play_run
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.factories import daily_spec, make_model, make_run, run_status
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.integration.test_api_runs import create
from tests.integration.test_llm_decider import JAN, by_step, llm_settings

pytestmark = pytest.mark.timeout(120)

LLM = "openai/gpt-4.1-mini"


def today() -> dt.date:
    """The UTC day now: asked at each use, since the suite may run across midnight."""
    return utc_day(dt.datetime.now(dt.UTC))


def deps(store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str, *,
         daily_usd: Decimal | None = None, **runner: Any) -> RunnerDeps:
    return RunnerDeps(store=store, event_log=event_log, settings=RunnerSettings(**runner),
                      stop=StopSignal(), llm=llm_settings(fake, api_key),
                      spend=SpendSettings(user_daily_cost_usd=daily_usd))


def llm_run(store: Store, *, user_id: str = "user-a", llm: str = LLM,
            parameters: dict[str, Any] | None = None, **spec: Any) -> Run:
    model = make_model(store, user_id, f"agent-{secrets.token_hex(4)}", llm=llm,
                       parameters=parameters)
    run: Run = make_run(store, daily_spec(**JAN, decider="llm", **spec), user_id=user_id,
                        model=model)
    return run


def earlier_spend(store: Store, user_id: str, cost: str) -> None:
    """A decision of another run of the user, decided now (today, UTC)."""
    run = make_run(store, daily_spec(**JAN), user_id=user_id)
    store.record_decision(Decision(run_id=run.id, step=0, bar_time=dt.datetime(
        2024, 1, 2, tzinfo=dt.UTC), action="hold", orders=[], reasoning="x", outcome="hold",
        latency_ms=1.0, tokens_in=100, tokens_out=10, cost=Decimal(cost)))


def test_a_cost_budget_stops_the_run_at_the_step_that_reaches_it(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    fake.script("gpt-4.1-mini", [Reply.text("Holding.", cost=0.02)] * 9)
    run = llm_run(store, max_cost_usd=Decimal("0.05"))
    assert play_run(run.id, deps(store, event_log, fake, api_key)) == EXIT_OK
    done = store.get_run(run.id)
    assert done.status is RunStatus.STOPPED, done
    assert done.status_reason == "budget exhausted: $0.06 of $0.05"
    # $0.02, $0.04, then $0.06 at step 3: no fourth call.
    assert len(fake.requests) == 3 and done.steps_done == 3
    result = done.result or {}
    assert result["ending"] == "stopped" and result["steps_done"] == 3
    assert result["budget"] == {"max_cost_usd": "0.05", "max_tokens": None,
                                "daily_limit_usd": None, "spent_usd": "0.06",
                                "tokens": 3 * 150}


def test_the_budget_is_checked_before_each_model_call_within_a_step(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    # Each answer asks for another tool call; the third call would pass the budget.
    portfolio = Reply(tool_calls=[("portfolio", {})], cost=0.03)
    fake.script("gpt-4.1-mini", by_step({0: portfolio}, after_tools=lambda r: portfolio))
    run = llm_run(store, max_cost_usd=Decimal("0.05"))
    assert play_run(run.id, deps(store, event_log, fake, api_key)) == EXIT_OK
    assert len(fake.requests) == 2
    done = store.get_run(run.id)
    assert (done.status, done.steps_done) == (RunStatus.STOPPED, 1)
    assert done.status_reason == "budget exhausted: $0.06 of $0.05"
    [decision] = store.list_decisions(run.id)
    assert decision.action == "hold" and decision.error == "budget_exhausted"
    assert "budget exhausted: $0.06 of $0.05" in (decision.reasoning or "")


def test_a_token_budget_from_the_models_parameters(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, parameters={"budget": {"max_tokens": 400}})
    assert play_run(run.id, deps(store, event_log, fake, api_key)) == EXIT_OK
    done = store.get_run(run.id)
    assert done.status_reason == "token budget exhausted: 450 of 400 tokens"
    assert (done.steps_done, len(fake.requests)) == (3, 3)


def test_the_spec_wins_over_the_model_and_the_model_over_settings(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, parameters={"budget": {"max_tokens": 10_000}}, max_tokens=160)
    assert play_run(run.id, deps(store, event_log, fake, api_key, max_tokens=1)) == EXIT_OK
    assert store.get_run(run.id).status_reason == "token budget exhausted: 300 of 160 tokens"
    bad = llm_run(store, parameters={"budget": {"max_cost": 1}})
    assert play_run(bad.id, deps(store, event_log, fake, api_key)) != EXIT_OK
    failed = store.get_run(bad.id)
    assert failed.status is RunStatus.FAILED and "parameters.budget" in (
        failed.status_reason or ""), failed.status_reason


def test_the_daily_limit_counts_the_users_other_runs_and_stops_this_one(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    fake.default = Reply.text("Holding.", cost=0.02)
    earlier_spend(store, "user-a", "0.04")
    run = llm_run(store)
    assert play_run(run.id, deps(store, event_log, fake, api_key,
                                 daily_usd=Decimal("0.05"))) == EXIT_OK
    done = store.get_run(run.id)
    assert done.status_reason == (f"daily LLM spend limit reached: $0.06 of $0.05 for "
                                  f"user-a on {today()} UTC")
    assert done.steps_done == 1
    # An operator's limit for the user wins over the default: None is no limit at all.
    store.set_daily_limit("user-a", None, by="ops")
    again = llm_run(store)
    assert play_run(again.id, deps(store, event_log, fake, api_key,
                                   daily_usd=Decimal("0.05"))) == EXIT_OK
    assert store.get_run(again.id).status is RunStatus.COMPLETED


def test_a_dollar_limit_without_a_price_stops_instead_of_spending_blind(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, llm="openai/no-such-price-model", max_cost_usd=Decimal("1"))
    assert play_run(run.id, deps(store, event_log, fake, api_key)) == EXIT_OK
    done = store.get_run(run.id)
    assert done.status is RunStatus.STOPPED and done.steps_done == 1
    assert "cannot be enforced" in (done.status_reason or "")
    assert "TICKRUN_LLM_PRICES" in (done.status_reason or "")


def test_spend_sums_are_exact_and_grouped_by_day_and_model(store: Store) -> None:
    for cost in ("0.1", "0.2"):
        earlier_spend(store, "user-s", cost)
    earlier_spend(store, "user-t", "5")
    day = today()
    since, until = day_window(day)
    assert store.spend_by_user(["user-s", "user-t", "user-u"], since, until) == {
        "user-s": Decimal("0.3"), "user-t": Decimal("5")}
    assert store.spend_by_user(["user-s"], *day_window(day + dt.timedelta(days=1))) == {}
    rows = store.usage("user-s", since, until)
    assert [(r.day, r.spend.decisions, r.spend.cost_usd, r.spend.tokens_in) for r in rows] \
        == [(day, 1, Decimal("0.1"), 100), (day, 1, Decimal("0.2"), 100)]


def test_admission_holds_only_the_llm_runs_of_a_user_over_the_limit(store: Store) -> None:
    earlier_spend(store, "user-h", "0.10")
    sma = make_run(store, daily_spec(**JAN, decider="sma_crossover"), user_id="user-h",
                   admit=False)
    llm = llm_run(store, user_id="user-h")
    waiting = make_run(store, daily_spec(**JAN, decider="llm"), user_id="user-h",
                       model=store.get_model(llm.model_id), admit=False)
    limit = DailyLimit(Decimal("0.10"), today())
    admitted = {r.id for r in run_status(store).admit_queued(5, 10, spend=limit)}
    assert admitted == {sma.id}
    held = store.get_run(waiting.id)
    assert held.status is RunStatus.QUEUED
    assert held.status_reason is not None and held.status_reason.startswith(
        "waiting: daily LLM spend limit reached ($0.10 of $0.10")
    assert store.count_held_for_spend() == 1
    # Raised for this user: admitted, and the reason goes with the wait.
    store.set_daily_limit("user-h", Decimal("1"), by="ops")
    assert {r.id for r in run_status(store).admit_queued(5, 10, spend=limit)} == {waiting.id}
    assert store.get_run(waiting.id).status_reason is None
    assert store.count_held_for_spend() == 0


def test_over_the_limit_runs_wait_queued_until_the_next_utc_day(
        backend: Backend, fake: FakeOpenAI, api_key: str) -> None:
    now = [dt.datetime.now(dt.UTC)]
    env = {"TICKRUN_LLM_API_KEY": api_key, "TICKRUN_LLM_BASE_URL": fake.base_url,
           "TICKRUN_LLM_PROVIDER": "openai"}
    with running_api(backend, daily_spend_usd=Decimal("0.05"), clock=lambda: now[0],
                     runner_env=env) as api, api.client("user-d") as c:
        store = api.services.store
        earlier_spend(store, "user-d", "0.05")
        model = c.post("/v1/models", json={"signature": "d", "llm": LLM}).json()["id"]
        body = {"model_id": model, "mode": "daily", "symbols": ["MSFT"], "data": "synthetic",
                "start": "2024-01-02", "end": "2024-01-05", "decider": "llm"}
        run = create(c, body)["id"]
        reason = wait_for(lambda: c.get(f"/v1/runs/{run}").json()["status_reason"], 10)
        assert reason.startswith("waiting: daily LLM spend limit reached ($0.05 of $0.05 on "
                                 f"{utc_day(now[0])} UTC)"), reason
        assert c.get(f"/v1/runs/{run}").json()["status"] == "queued"
        usage = c.get("/v1/usage").json()
        assert (usage["daily_limit_usd"], usage["limit_source"]) == ("0.05", "default")
        assert Decimal(usage["spent_today_usd"]) == Decimal("0.05")
        now[0] += dt.timedelta(days=1)  # a new UTC day: the limit counts from zero
        api.services.wake_controller()
        done = wait_status(c, run, {"completed", "failed", "stopped"}, timeout=60)
        assert done["status"] == "completed" and done["status_reason"] is None, done


def test_usage_and_limits_over_http(backend: Backend) -> None:
    with running_api(backend, reconcile=False, operator_user_ids=["user-ops"]) as api, \
            api.client("user-u") as user, api.client("user-ops") as ops:
        earlier_spend(api.services.store, "user-u", "0.25")
        report = user.get("/v1/usage", params={"days": 3}).json()
        assert report["user_id"] == "user-u" and report["limit_source"] == "none"
        [row] = report["days"]
        assert (row["day"], row["decisions"], row["tokens_in"], Decimal(row["cost_usd"])) == (
            str(today()), 1, 100, Decimal("0.25"))
        # Only operators set limits or read another user's usage.
        refused = user.put("/v1/usage/limits/user-u", json={"daily_cost_usd": "100"})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert user.get("/v1/usage", params={"user_id": "user-ops"}).status_code == 403
        bad = ops.put("/v1/usage/limits/user-u", json={"daily_cost_usd": "-1"})
        assert bad.status_code == 422, bad.text
        assert ops.put("/v1/usage/limits/user-u",
                       json={"daily_cost_usd": "2.5"}).status_code == 204
        mine = user.get("/v1/usage").json()
        assert (mine["daily_limit_usd"], mine["limit_source"]) == ("2.5", "user")
        assert ops.get("/v1/usage", params={"user_id": "user-u"}).json()["user_id"] == "user-u"
        assert ops.delete("/v1/usage/limits/user-u").status_code == 204
        assert ops.delete("/v1/usage/limits/user-u").status_code == 404
        assert user.get("/v1/usage").json()["limit_source"] == "none"
        assert user.get("/v1/usage", params={"days": 0}).status_code == 422
        # A budget must be a positive amount; a refused run is not stored.
        model = user.post("/v1/models", json={"signature": "b", "llm": LLM}).json()["id"]
        for budget in ({"max_cost_usd": "-1"}, {"max_tokens": 0}, {"max_tokens": "9"}):
            refused = user.post("/v1/runs", json={
                "model_id": model, "mode": "daily", "symbols": ["MSFT"], "data": "synthetic",
                "start": "2024-01-02", "end": "2024-01-05", **budget})
            assert refused.status_code == 422, (budget, refused.text)
        assert user.get("/v1/runs", params={"model_id": model}).json()["items"] == []
