"""Issue 13: a refused key, an unknown model or invalid LLM settings fail the run at once;
cost from the price table where the provider reports none, cached prompt tokens; the
stable prompt first; who traded a run; a replay of another run's bars is refused.

Through the real ChatOpenAI client against the local OpenAI-compatible server, on
PostgreSQL and SQLite, and (for the exit codes) in real `python -m runner` processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import pytest

from core.errors import InvalidSpec
from core.eventlog import EventLog, EventType
from core.exitcodes import EXIT_NO_RETRY
from core.spec import DeciderKind, RunSpec
from core.status import RunStatus
from core.store import Store
from runner.app import RunnerDeps, play_run
from runner.deciders.factory import build_decider
from runner.llm_prices import PriceTable
from runner.session import Ending
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.apiserver import Backend, running_api, token, wait_status
from tests.factories import daily_spec, make_run
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply, fake_openai
from tests.integration.test_llm_decider import (
    JAN,
    by_step,
    counter,
    llm_run,
    llm_settings,
    play,
    session_for,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NO_KEYS = {"OPENAI_API_KEY": "", "OPENROUTER_API_KEY": ""}  # none from the test's own env


def runner(run_id: int, env: dict[str, str], timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--run-id", str(run_id)],
                          env=env, capture_output=True, text=True, timeout=timeout)


# -- fail fast ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_refused_key_fails_the_run_within_one_step_with_exit_no_retry(
        store: Store, event_log: EventLog, runner_env: dict[str, str]) -> None:
    wrong_key = f"sk-wrong-{secrets.token_hex(20)}"
    run = llm_run(store, "openai/gpt-4.1-mini")
    with fake_openai(f"sk-right-{secrets.token_hex(8)}") as server:
        env = {**runner_env, **NO_KEYS, "TICKRUN_LLM_BASE_URL": server.base_url,
               "TICKRUN_LLM_PROVIDER": "openai", "TICKRUN_LLM_API_KEY": wrong_key}
        began = time.monotonic()
        done = runner(run.id, env)
        took = time.monotonic() - began
        refused = server.unauthorized
    assert done.returncode == EXIT_NO_RETRY, done.stderr[-3000:]
    assert refused == 1 and took < 60  # one call, no retry, no second step
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.FAILED and failed.steps_done == 0
    reason = failed.status_reason or ""
    assert "refused the key (401)" in reason and "TICKRUN_LLM_API_KEY" in reason
    assert server.base_url in reason
    assert store.list_decisions(run.id) == []
    result = failed.result or {}
    assert result["ending"] == "failed" and result["decider"] == "llm"
    assert result["decider_reason"] is None  # the llm its model names played it
    final = event_log.read(run.id, count=1000)[-1]
    assert final.type is EventType.RESULT and final.data["status"] == "failed"
    assert final.data["reason"] == reason
    events = json.dumps([e.data for e in event_log.read(run.id, count=1000)])
    for where, text in (("reason", reason), ("stderr", done.stderr), ("stdout", done.stdout),
                        ("events", events), ("result", json.dumps(result))):
        assert wrong_key not in text and wrong_key[9:29] not in text, f"key in {where}"


def refuse_from_step(step: int, refusal: Reply) -> Any:
    """A buy at step 0, holds, then `refusal` for every call from `step` on."""
    hold = by_step({0: Reply.call("buy", symbol="MSFT", quantity=2)})

    def script(request: ChatRequest) -> Reply:
        if request.step is not None and request.step >= step:
            return refusal
        return hold(request)
    return script


@pytest.mark.parametrize(("refusal", "says"), [
    (Reply.error(404), "unknown model 'no-such-model' at {url} (404): check the model's llm "
                       "and TICKRUN_LLM_BASE_URL; the provider says: scripted 404"),
    (Reply.error(403), "the LLM provider at {url} denied access to model 'no-such-model' "
                       "(403); the provider says: scripted 403"),
    # OpenRouter without credits, and OpenAI's out-of-quota 429 (no wait can help).
    (Reply.error(402), "the LLM account at {url} has no credit left (402): add credit or "
                       "use another key; the provider says: scripted 402"),
    (Reply.error(429, error_code="insufficient_quota"),
     "the LLM account at {url} has no credit left (429): add credit or use another key; "
     "the provider says: scripted 429"),
], ids=["404", "403", "402", "429-insufficient-quota"])
def test_an_unknown_or_forbidden_model_fails_the_run_and_keeps_its_trades(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str, refusal: Reply,
        says: str) -> None:
    run = llm_run(store, "openai/no-such-model")
    fake.script("no-such-model", refuse_from_step(2, refusal))
    deps = RunnerDeps(store=store, event_log=event_log, settings=RunnerSettings(),
                      stop=StopSignal(), llm=llm_settings(fake, api_key))
    assert play_run(run.id, deps) == EXIT_NO_RETRY
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.status_reason == says.format(url=fake.base_url)
    assert failed.steps_done == 2 and len(fake.requests_for("no-such-model")) == 4
    [trade] = store.list_trades(run.id)  # the trades made before stay
    assert trade.step == 0 and trade.filled
    result = failed.result or {}
    assert result["ending"] == "failed" and result["trades"] == 1
    assert result["steps_done"] == 2 and result["benchmark"] is not None


@pytest.mark.slow
def test_invalid_llm_settings_fail_the_runs_that_need_the_llm_and_no_others(
        store: Store, runner_env: dict[str, str]) -> None:
    secret = f"sk-secret-{secrets.token_hex(20)}"
    env = {**runner_env, **NO_KEYS, "TICKRUN_LLM_API_KEY": secret,
           "TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS": "-1",
           "TICKRUN_LLM_PRICES": json.dumps({"my-model": {"input": "1", "output": secret}})}
    asks_llm = llm_run(store, "openai/gpt-4.1-mini")
    model_names_llm = llm_run(store, "openai/gpt-4.1-mini", daily_spec(**JAN))
    baseline = make_run(store, daily_spec(**JAN))  # its model names no LLM
    for run in (asks_llm, model_names_llm):
        done = runner(run.id, env)
        assert done.returncode == EXIT_NO_RETRY, done.stderr[-3000:]
        failed = store.get_run(run.id)
        assert failed.status is RunStatus.FAILED and failed.steps_done == 0
        reason = failed.status_reason or ""
        assert reason.startswith("invalid TICKRUN_LLM_* settings: ")
        assert "TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS: Input should be greater than 0" in reason
        assert "TICKRUN_LLM_PRICES my-model.output: Input should be a valid decimal" in reason
        assert "Traceback" not in done.stderr
        for text in (reason, done.stderr, done.stdout, json.dumps(failed.result)):
            assert secret not in text and secret[10:30] not in text
    done = runner(baseline.id, env)
    assert done.returncode == 0, done.stderr[-3000:]
    played = store.get_run(baseline.id)
    assert played.status is RunStatus.COMPLETED and played.decider == "sma_crossover"


# -- cost and cached tokens --------------------------------------------------------------
def test_openai_usage_without_cost_is_priced_from_the_table_with_its_cached_tokens(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/gpt-4.1-mini-2025-04-14")
    fake.default = Reply.text("Hold.", tokens_in=2000, tokens_cached=1536, tokens_out=50)
    cached_before = counter("tickrun_runner_llm_tokens_total", direction="cached")
    cost_before = counter("tickrun_runner_llm_cost_dollars_total")
    session = session_for(store, event_log, run, llm_settings(fake, api_key))
    assert play(session) is Ending.COMPLETED

    # (2000 - 1536) x $0.40 + 1536 x $0.10 + 50 x $1.60 per million (gpt-4.1-mini)
    each = Decimal("0.0004192")
    price = PriceTable.load().price("gpt-4.1-mini")
    assert price is not None and price.cost(2000, 1536, 50) == each
    decisions = store.list_decisions(run.id)
    assert [(d.tokens_in, d.tokens_cached, d.tokens_out, d.cost) for d in decisions] == [
        (2000, 1536, 50, each)] * 9
    result = session.result(Ending.COMPLETED)
    assert (result["tokens_in"], result["tokens_cached"], result["tokens_out"]) == (
        9 * 2000, 9 * 1536, 9 * 50)
    assert Decimal(result["cost"]) == 9 * each and result["unknown_cost_decisions"] == 0
    shown = [e.data for e in event_log.read(run.id, count=1000)
             if e.type is EventType.DECISION]
    assert {(d["tokens_cached"], Decimal(d["cost"])) for d in shown} == {(1536, each)}
    assert counter("tickrun_runner_llm_tokens_total",
                   direction="cached") == cached_before + 9 * 1536
    assert counter("tickrun_runner_llm_cost_dollars_total") == pytest.approx(
        cost_before + float(9 * each))


def test_a_model_without_a_price_costs_unknown_until_the_settings_price_it(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    unpriced = llm_run(store, "openai/house-model")
    session = session_for(store, event_log, unpriced, llm_settings(fake, api_key))
    play(session)
    assert {d.cost for d in store.list_decisions(unpriced.id)} == {None}
    result = session.result(Ending.COMPLETED)
    assert result["unknown_cost_decisions"] == 9 and Decimal(result["cost"]) == 0
    assert result["tokens_in"] == 9 * 120  # the tokens are known all the same

    priced = llm_run(store, "openai/house-model")
    prices = {"house-model": {"input": "3", "cached_input": "1", "output": "5"}}
    session = session_for(store, event_log, priced,
                          llm_settings(fake, api_key, prices=prices))
    play(session)
    assert {d.cost for d in store.list_decisions(priced.id)} == {
        (120 * Decimal(3) + 30 * Decimal(5)) / 10**6}
    assert session.result(Ending.COMPLETED)["unknown_cost_decisions"] == 0


def test_a_reported_cost_wins_over_the_table(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/gpt-4.1")
    fake.default = Reply.text("Hold.", cost=0.0123, tokens_cached=100)
    play(session_for(store, event_log, run, llm_settings(fake, api_key)))
    decisions = store.list_decisions(run.id)
    assert {(d.cost, d.tokens_cached) for d in decisions} == {(Decimal("0.0123"), 100)}


def test_the_stable_prompt_comes_first_and_is_byte_identical_at_every_step(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/cacheable", custom_rules="Never hold more than 5 shares.",
                  custom_instructions="Buy on Mondays.")
    fake.script("cacheable", by_step({1: Reply.call("buy", symbol="MSFT", quantity=1),
                                      4: Reply.call("portfolio")}))
    play(session_for(store, event_log, run, llm_settings(fake, api_key)))
    requests = fake.requests_for("cacheable")
    assert len(requests) == 11 and {r.step for r in requests} == set(range(9))
    # What providers cache is a request's prefix: the tools, then the system message.
    assert all(r.messages[0]["role"] == "system" for r in requests)
    assert len({r.messages[0]["content"] for r in requests}) == 1
    assert len({json.dumps(r.body["tools"], sort_keys=False) for r in requests}) == 1
    system = requests[0].messages[0]["content"]
    assert "Never hold more than 5 shares." in system and "Buy on Mondays." in system
    assert "Step " not in system and "Portfolio:" not in system  # the step's part follows
    assert all(r.messages[1]["role"] == "user" and "Step " in r.messages[1]["content"]
               for r in requests)


# -- replay ------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "says"), [
    ({"symbols": ["AAPL"]}, "has other symbols MSFT (this run: AAPL)"),
    ({"end": dt.date(2024, 1, 31)},
     "has other dates daily 2024-01-02..2024-01-12 (this run: daily 2024-01-02..2024-01-31)"),
    ({"seed": 7}, "has other synthetic seed 0 (this run: 7)"),
    ({"data": "files"}, "has other data synthetic (this run: files)"),
])
def test_a_replay_of_a_run_on_other_bars_is_refused(
        store: Store, change: dict[str, Any], says: str) -> None:
    source = make_run(store, daily_spec(**JAN, decider="sma_crossover"))
    spec = RunSpec.model_validate({
        **source.spec.model_dump(), "decider": "replay",
        "decider_params": {"source_run_id": source.id}, **change})
    replay = make_run(store, spec, user_id=source.user_id)
    with pytest.raises(InvalidSpec) as refused:
        build_decider(DeciderKind.REPLAY, replay, store.get_model(replay.model_id), store)
    assert str(refused.value) == f"replay source run {source.id} {says}"


# -- who traded --------------------------------------------------------------------------
def test_who_traded_a_run_whose_model_names_an_llm_without_a_key(
        backend: Backend, tmp_path: Any) -> None:
    with running_api(backend, runner_env=NO_KEYS) as api, api.client() as c:
        model = c.post("/v1/models", json={"signature": "gpt-fan",
                                           "llm": "openai/gpt-4.1-mini"}).json()
        body = {"model_id": model["id"], "mode": "daily", "symbols": ["MSFT"],
                "start": "2024-01-02", "end": "2024-01-12", "data": "synthetic"}
        created = c.post("/v1/runs", json=body)
        assert created.status_code == 201, created.text
        run = wait_status(c, created.json()["id"], {"completed", "failed"})
        why = ("model 'gpt-fan' names openai/gpt-4.1-mini but this runner has no LLM key "
               "(TICKRUN_LLM_API_KEY): played by sma_crossover")
        assert run["status"] == "completed", run
        assert (run["decider"], run["decider_reason"]) == ("sma_crossover", why)
        assert (run["result"]["decider"], run["result"]["decider_reason"]) == (
            "sma_crossover", why)
        [listed] = c.get("/v1/runs").json()["items"]
        assert (listed["decider"], listed["decider_reason"]) == ("sma_crossover", why)
        status = [e.data for e in backend.event_log().read(run["id"], count=1000)
                  if e.type is EventType.STATUS and e.data.get("decider")]
        assert status and status[0]["decider_reason"] == why

        # The CLI's result table is headed by the decider that played, and says why.
        cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")},
                   "PYTHONPATH": REPO, "TICKRUN_API_URL": api.url,
                   "TICKRUN_TOKEN": token("user-a")}
        shown = subprocess.run([sys.executable, "-m", "api.cli", "runs", "get",
                                str(run["id"])], env=cli_env, capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        header = next(line for line in shown.stdout.splitlines() if "buy & hold" in line)
        assert "sma_crossover" in header and "agent" not in header
        assert f"decider: {why}" in shown.stdout
        listing = subprocess.run([sys.executable, "-m", "api.cli", "runs", "ls"], env=cli_env,
                                 capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert listing.returncode == 0, listing.stderr
        assert "decider" in listing.stdout.splitlines()[0]
        assert "sma_crossover" in listing.stdout

        # A replay of that run on other symbols or dates is refused at once.
        replay = {**body, "decider": "replay", "decider_params": {"source_run_id": run["id"]}}
        for change, says in (({"symbols": ["AAPL"]}, "symbols MSFT (this run: AAPL)"),
                             ({"end": "2024-01-31"}, "dates daily 2024-01-02..2024-01-12")):
            refused = c.post("/v1/runs", json={**replay, **change})
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert says in refused.json()["detail"]
        assert c.post("/v1/runs", json=replay).status_code == 201
