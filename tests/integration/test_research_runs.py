"""Research in whole runs: the API and runner processes, the official `massive` client
against a local server that speaks Massive's news and financials protocol, and an LLM
(the real ChatOpenAI client against a local OpenAI-compatible server) that asks for
news and fundamentals at every step. Answers end at each bar's close; the result and
the audit say so; a replay sees the same answers without asking the provider; an item
planted in the ledger past its bar is found."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.apiserver import Backend, running_api, token, wait_status
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply
from tests.fakes.polygon_server import FakePolygon, Market
from tests.integration.test_api_runs import create
from tests.integration.test_runs_market_data import provider_settings

pytestmark = pytest.mark.timeout(240)

KEY = "pk-test-not-a-real-key"  # the key test_runs_market_data configures
FIRST, LAST = dt.date(2025, 6, 2), dt.date(2025, 6, 4)  # three sessions
CLOSE = dt.datetime(2025, 6, 2, 20, 0, tzinfo=dt.UTC)  # 16:00 New York on the first
SECOND = dt.timedelta(seconds=1)
LLM = "openai/gpt-4.1-mini"


@pytest.fixture
def polygon() -> Any:
    market = Market(("AAPL",))
    news = market.research
    news.add_news("at-the-close", CLOSE, ["AAPL"], "Apple closes at a record")
    news.add_news("one-second-late", CLOSE + SECOND, ["AAPL"], "Apple after hours")
    # Undated: the provider's window finds it (indexed then), the tools never answer it.
    news.add_news("undated", None, ["AAPL"], "An undated rumour",
                  indexed_at=CLOSE - dt.timedelta(hours=1))
    # The year ended in December; the 10-K is filed (and accepted) after the first close.
    news.add_financials("AAPL", 2024, "FY", dt.date(2024, 12, 31), FIRST + dt.timedelta(days=1),
                        acceptance_datetime=CLOSE + dt.timedelta(hours=20),
                        figures={"income_statement": {"revenues": 391035000000}})
    news.add_financials("AAPL", 2025, "Q1", dt.date(2025, 3, 29), dt.date(2025, 5, 2),
                        figures={"income_statement": {"revenues": 95359000000}})
    with FakePolygon(KEY, market=market) as fake:
        yield fake


def asks_for_research(request: ChatRequest) -> Reply:
    if request.last_role == "tool":
        return Reply.text("Holding: read the news.")
    return Reply(tool_calls=[("news", {"symbol": "AAPL", "lookback_hours": 48}),
                             ("fundamentals", {"symbol": "AAPL"})])


def runner_env(polygon: FakePolygon, fake: FakeOpenAI, api_key: str) -> dict[str, str]:
    return {"TICKRUN_POLYGON_API_KEY": KEY, "TICKRUN_POLYGON_BASE_URL": polygon.url,
            "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS": "20",
            "TICKRUN_LLM_API_KEY": api_key, "TICKRUN_LLM_BASE_URL": fake.base_url,
            "TICKRUN_LLM_PROVIDER": "openai"}


def research_calls(c: httpx.Client, run_id: int) -> dict[int, dict[str, Any]]:
    """Each step's research answers: {step: {tool: answer}}."""
    decisions = c.get(f"/v1/runs/{run_id}/decisions").raise_for_status().json()
    return {d["step"]: {call["name"]: call["result"] for call in d["tool_calls"]
                        if call["name"] in ("news", "fundamentals")} for d in decisions}


def titles(answer: dict[str, Any]) -> list[str]:
    return [item["title"] for item in answer["items"]]


def test_a_run_reads_research_as_of_each_close_and_a_replay_reads_the_same(
        backend: Backend, polygon: FakePolygon, fake: FakeOpenAI, api_key: str) -> None:
    fake.script("gpt-4.1-mini", asks_for_research)
    with running_api(backend, runner_env=runner_env(polygon, fake, api_key),
                     market_data=provider_settings(polygon)) as api, \
            api.client() as c:
        model = c.post("/v1/models", json={"signature": "reader", "llm": LLM}).json()["id"]
        body = {"model_id": model, "mode": "daily", "symbols": ["AAPL"], "data": "polygon",
                "start": FIRST.isoformat(), "end": LAST.isoformat(), "decider": "llm"}
        run = create(c, body)["id"]
        done = wait_status(c, run, {"completed", "failed", "stopped"})
        assert done["status"] == "completed", done
        assert done["result"]["lookahead"] == "clean"
        assert done["result"]["research"]["dated_items"] > 0

        seen = research_calls(c, run)
        # The first close: the item published at 16:00:00 is in, one a second later is
        # not (it is in the next day's answer); the undated one never is.
        assert titles(seen[0]["news"]) == ["Apple closes at a record"]
        assert titles(seen[1]["news"])[:2] == ["Apple after hours", "Apple closes at a record"]
        assert all("undated" not in titles(step["news"]) for step in seen.values())
        # The 10-K of a year that ended in December is first answered once accepted.
        assert [f["fiscal_period"] for f in seen[0]["fundamentals"]["filings"]] == ["Q1"]
        assert seen[1]["fundamentals"]["filings"][0]["fiscal_period"] == "FY"

        audit = c.get(f"/v1/runs/{run}/audit").raise_for_status().json()
        assert audit["lookahead"] == "clean" and audit["violations"] == 0
        assert audit["dated_items"] == done["result"]["research"]["dated_items"]
        assert all(i["seconds_before_as_of"] >= 0 for i in audit["items"])

        # A replay: the same answers, recorded with its decisions, and no provider call
        # (its bars are cached; its research is the source's).
        asked = polygon.request_count
        replay = create(c, {**body, "decider": "replay",
                            "decider_params": {"source_run_id": run}})["id"]
        replayed = wait_status(c, replay, {"completed", "failed", "stopped"})
        assert replayed["status"] == "completed", replayed
        assert polygon.request_count == asked
        assert research_calls(c, replay) == seen
        assert replayed["result"]["lookahead"] == "clean"

        # An item planted in the source's ledger, known a minute after the bar's end.
        planted = {"name": "news", "args": {"symbol": "AAPL"}, "result": {"items": [
            {"title": "From the future", "known_at": (CLOSE + dt.timedelta(minutes=1))
             .isoformat()}]}}
        store = api.services.store
        decision = store.get_decision(run, 0)
        assert decision is not None
        with store._tx(write=True) as cur:  # the test writes the ledger itself
            cur.run("UPDATE decisions SET tool_calls = %s WHERE run_id = %s AND step = 0",
                    (store.dialect.json([*decision.tool_calls, planted]), run))
        found = c.get(f"/v1/runs/{run}/audit").raise_for_status().json()
        assert found["lookahead"] == "1 item"
        [bad] = [i for i in found["items"] if not i["ok"]]
        assert (bad["label"], bad["seconds_before_as_of"]) == ("From the future", -60.0)

        # The CLI says the same, and exits 1 so a script can gate on it.
        cli = subprocess.run(
            [sys.executable, "-m", "api.cli", "runs", "audit", str(run)],
            env={"TICKRUN_API_URL": api.url, "TICKRUN_TOKEN": token("user-a"),
                 "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
            capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1, cli.stderr
        assert "look-ahead 1 item" in cli.stdout and "From the future" in cli.stdout


def test_a_provider_that_refuses_research_is_an_answer_and_the_run_plays(
        backend: Backend, polygon: FakePolygon, fake: FakeOpenAI, api_key: str) -> None:
    """The bars are cached; then the provider refuses every request (a key revoked): the
    tools answer `unavailable` with the provider's reason (never the key) and the run
    completes on its bars."""
    fake.script("gpt-4.1-mini", asks_for_research)
    with running_api(backend, runner_env=runner_env(polygon, fake, api_key),
                     market_data=provider_settings(polygon)) as api, \
            api.client() as c:
        model = c.post("/v1/models", json={"signature": "r", "llm": LLM}).json()["id"]
        body = {"model_id": model, "mode": "daily", "symbols": ["AAPL"], "data": "polygon",
                "start": FIRST.isoformat(), "end": FIRST.isoformat()}
        warm = create(c, {**body, "decider": "sma_crossover"})["id"]
        assert wait_status(c, warm, {"completed", "failed"})["status"] == "completed"
        polygon.fail_next(1000, 401)
        run = create(c, {**body, "decider": "llm"})["id"]
        done = wait_status(c, run, {"completed", "failed", "stopped"})
        assert done["status"] == "completed", done
        answers = research_calls(c, run)[0]
        assert answers["news"]["status"] == "unavailable", answers
        assert "polygon" in answers["news"]["reason"]
        assert KEY not in json.dumps(answers)
        assert done["result"]["lookahead"] == "clean"
        assert done["result"]["research"]["dated_items"] == 0
