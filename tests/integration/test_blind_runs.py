"""Blind runs: the agent trades pseudonyms on relative time. Checked where it matters, at
the LLM provider (a local OpenAI-compatible server, the real ChatOpenAI client): no
request of a blind run carries the ticker or a calendar date, in the prompt, the tool
schemas or any tool answer; the ledger still trades the real symbol."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

from core.eventlog import EventLog
from core.store import Store
from runner.session import Ending
from tests.factories import daily_spec, intraday_spec
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply
from tests.integration.test_llm_decider import llm_run, llm_settings, play, session_for

CALENDAR_DATE = re.compile(r"\b(19|20)\d{2}-\d{2}-\d{2}")


def script(request: ChatRequest) -> Reply:
    if request.last_role == "tool":
        return Reply.text("Done.")
    step = request.step
    if step == 0:
        return Reply(tool_calls=[("price_history", {"symbol": "STOCK_B", "lookback": 5}),
                                 ("portfolio", {})])
    if step == 1:
        return Reply.call("buy", symbol="stock_b", quantity=3, reason="momentum")
    if step == 2:  # a symbol that is not the run's: the refusal names pseudonyms only
        return Reply(tool_calls=[("sell", {"symbol": "TSLA", "quantity": 1}),
                                 ("open_orders", {})])
    return Reply.text("Holding.")


def leaks(request: ChatRequest, tickers: list[str]) -> list[str]:
    body = json.dumps(request.body)
    found = [t for t in tickers if re.search(rf"\b{t}\b", body)]
    return found + CALENDAR_DATE.findall(body)


def test_a_blind_intraday_run_shows_neither_tickers_nor_dates(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    spec = intraday_spec(dt.date(2025, 3, 3), symbols=["AAPL", "MSFT"], decider="llm",
                         blind=True)
    run = llm_run(store, "openai/gpt-4.1-mini", spec, cash=Decimal(100_000),
                  custom_rules="Never hold AAPL overnight.")
    fake.script("gpt-4.1-mini", script)
    session = session_for(store, event_log, run, llm_settings(fake, api_key))
    assert play(session) is Ending.COMPLETED

    requests = fake.requests_for("gpt-4.1-mini")
    assert len(requests) >= 390
    assert [leaks(r, ["AAPL", "MSFT"]) for r in requests if leaks(r, ["AAPL", "MSFT"])] == []
    system = requests[0].text_of("system")
    assert "STOCK_A, STOCK_B" in system and "Never hold STOCK_A overnight." in system
    first = requests[0].text_of("user")
    assert "minute +0" in first and "STOCK_B" in first
    # The tools take and answer pseudonyms; the ledger trades the real symbol.
    answered = [json.loads(m["content"]) for r in requests for m in r.messages
                if m["role"] == "tool"]
    assert any(a.get("symbol") == "STOCK_B" and a.get("bars") for a in answered)
    assert any("STOCK_A" in a.get("last_close", {}) for a in answered)
    [trade] = store.list_trades(run.id)
    assert (trade.symbol, trade.quantity, trade.step) == ("MSFT", Decimal(3), 1)
    refusal = next(a for a in answered if a.get("status") == "rejected")
    assert "STOCK_A" in refusal["reason"] and "AAPL" not in refusal["reason"]


def test_a_blind_daily_run_counts_trading_days_and_an_open_run_is_unchanged(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    days = {"start": dt.date(2024, 1, 2), "end": dt.date(2024, 1, 12)}
    fake.script("gpt-4.1-mini", script)
    blind = llm_run(store, "openai/gpt-4.1-mini",
                    daily_spec(**days, symbols=["AAPL", "MSFT"], decider="llm", blind=True))
    assert play(session_for(store, event_log, blind, llm_settings(fake, api_key))) \
        is Ending.COMPLETED
    blind_requests = fake.requests_for("gpt-4.1-mini")
    assert all(not leaks(r, ["AAPL", "MSFT"]) for r in blind_requests)
    last_user = [r for r in blind_requests if r.last_role == "user"][-1].text_of("user")
    assert "day +8" in last_user  # nine sessions: 2024-01-02 is day +0
    # The same model open: its prompt names the ticker and the dates, as before.
    open_run = llm_run(store, "openai/gpt-4.1-mini",
                       daily_spec(**days, symbols=["AAPL", "MSFT"], decider="llm"))
    before = len(blind_requests)
    assert play(session_for(store, event_log, open_run, llm_settings(fake, api_key))) \
        is Ending.COMPLETED
    opened = fake.requests_for("gpt-4.1-mini")[before:]
    assert "AAPL" in opened[0].text_of("system") and "2024-01-02" in opened[0].text_of("system")
