"""The llm decider through the real ChatOpenAI client against a local OpenAI-compatible
server: trades through tools, failures as HOLDs, isolation of runs, replay, secrets,
and SIGTERM during a slow answer in a real runner process."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from core.eventlog import EventLog, EventType
from core.records import Model, Order, Run, Side, TradeStatus
from core.spec import DeciderKind, RunSpec
from core.status import RunStatus
from core.store import Store
from runner.deciders.base import DeciderFailed, number
from runner.deciders.factory import build_decider
from runner.deciders.replay import ReplayDecider
from runner.events import EventPublisher
from runner.llm_settings import LlmSettings
from runner.marketdata import market_data_for, timeline_for
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import daily_spec, intraday_spec, make_model, make_run, run_status
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply, fake_openai

# Nine sessions: 2024-01-02 .. 2024-01-12.
JAN = {"start": dt.date(2024, 1, 2), "end": dt.date(2024, 1, 12)}


@pytest.fixture
def fake(api_key: str) -> Iterator[FakeOpenAI]:
    with fake_openai(api_key) as server:
        yield server
    assert server.unauthorized == 0, "a request came without the run's bearer key"


def llm_settings(fake: FakeOpenAI, api_key: str, **kw: Any) -> LlmSettings:
    kw.setdefault("max_retries", 2)
    kw.setdefault("retry_initial_seconds", 0.01)
    kw.setdefault("retry_max_seconds", 0.05)
    kw.setdefault("provider", "openai")
    return LlmSettings(base_url=fake.base_url, api_key=SecretStr(api_key), **kw)


def llm_run(store: Store, llm: str, spec: RunSpec | None = None, *, user_id: str = "user-a",
            cash: Decimal | None = None, **model_kw: Any) -> Run:
    model = make_model(store, user_id, f"agent-{secrets.token_hex(4)}", llm=llm, **model_kw)
    spec = spec or daily_spec(**JAN, decider="llm")
    return make_run(store, spec, user_id=user_id, model=model, cash=cash)


def session_for(store: Store, event_log: EventLog, run: Run, llm: LlmSettings | None = None, *,
                stop: StopSignal | None = None, **settings: Any) -> Session:
    run = run_status(store).start_attempt(run.id)
    model = store.get_model(run.model_id)
    runner_settings = RunnerSettings(**settings)
    decider = build_decider(run.spec.decider or DeciderKind.LLM, run, model, store, llm=llm,
                            decision_timeout_seconds=runner_settings.decision_timeout_seconds)
    timeline = timeline_for(run.spec)
    provider = market_data_for(run.spec, store, runner_settings.data_dir)
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=model, decider=decider, timeline=timeline,
                   bars={s: provider.bars(s, timeline) for s in run.spec.symbols},
                   stop=stop or StopSignal(), settings=runner_settings)


def play(session: Session) -> Ending:
    try:
        return session.play()
    finally:
        session.close()


def by_step(plan: dict[int, Reply | Callable[[ChatRequest], Reply]],
            after_tools: Callable[[ChatRequest], Reply] | None = None
            ) -> Callable[[ChatRequest], Reply]:
    """A script keyed by the step the prompt names; after tool results, a closing text."""
    def script(request: ChatRequest) -> Reply:
        if request.last_role == "tool":
            return (after_tools or (lambda r: Reply.text(f"Done: {r.last_tool_result}")))(
                request)
        step = request.step
        planned = plan.get(-1 if step is None else step, Reply.text("Holding: no signal."))
        return planned(request) if callable(planned) else planned
    return script


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_buys_is_refused_sells_and_holds_and_the_ledger_shows_exactly_that(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/gpt-4.1-mini", cash=Decimal(10_000),
                  custom_rules="Never hold more than 50 shares.",
                  custom_instructions="Explain every trade in one sentence.",
                  parameters={"temperature": 0.2, "max_tool_calls": 3})
    fake.script("gpt-4.1-mini", by_step({
        0: Reply.call("buy", symbol="MSFT", quantity=10, reason="trend up"),
        1: Reply.call("buy", symbol="MSFT", quantity=1_000_000),
        2: Reply(tool_calls=[("portfolio", {}), ("sell", {"symbol": "MSFT", "quantity": 10})],
                 cost=0.0005),
    }, after_tools=lambda r: Reply.text("Trade done.", cost=0.00025)))
    session = session_for(store, event_log, run, llm_settings(fake, api_key))
    assert play(session) is Ending.COMPLETED

    trades = store.list_trades(run.id, limit=100)
    assert [(t.step, t.seq, t.side, t.quantity, t.status) for t in trades] == [
        (0, 0, Side.BUY, Decimal(10), TradeStatus.FILLED),
        (1, 0, Side.BUY, Decimal(1_000_000), TradeStatus.REFUSED),
        (2, 0, Side.SELL, Decimal(10), TradeStatus.FILLED),
    ]
    assert "insufficient cash" in str(trades[1].reason)
    assert trades[0].reasoning == "trend up"
    bars = session.bars["MSFT"]
    assert trades[0].price == bars[1].open and trades[2].price == bars[3].open  # next open
    expected_cash = Decimal(10_000) - 10 * bars[1].open + 10 * bars[3].open
    assert store.get_portfolio(run.id).cash == expected_cash

    decisions = store.list_decisions(run.id, limit=100)
    assert [(d.action, d.outcome) for d in decisions] == [
        ("buy", "trade"), ("buy", "trade"), ("sell", "trade")] + [("hold", "hold")] * 6
    assert all(d.orders == [] for d in decisions)  # the tools traded; nothing to re-execute
    assert [c["name"] for c in decisions[2].tool_calls] == ["portfolio", "sell"]
    assert decisions[1].tool_calls[0]["result"]["status"] == "refused"
    assert decisions[0].reasoning == "Trade done."
    assert decisions[5].reasoning == "Holding: no signal."
    assert decisions[0].tokens_in == 240 and decisions[0].tokens_out == 60  # two model calls
    # Reported where the provider reports it; else gpt-4.1-mini's price from the table.
    table = (120 * Decimal("0.40") + 30 * Decimal("1.60")) / 10**6
    assert decisions[2].cost == Decimal("0.00075") and decisions[4].cost == table
    assert decisions[0].cost == table + Decimal("0.00025")
    assert all(d.latency_ms > 0 for d in decisions)

    # What the agent was told: its rules, the step, no bar after the current one, and
    # the refusal of the step before.
    requests = fake.requests_for("gpt-4.1-mini")
    system = requests[0].messages[0]["content"]
    assert "Never hold more than 50 shares." in system and "one sentence" in system
    assert "next bar's open" in system and "initial margin" in system
    assert sorted(requests[0].tools) == [
        "buy", "calculator", "cancel_order", "close_all", "cover", "open_orders",
        "place_limit_order", "place_stop_order", "portfolio", "price_history", "sell", "short"]
    assert requests[0].body.get("temperature") == 0.2
    step_3 = next(r for r in requests if r.step == 2 and r.last_role == "user")
    user = step_3.text_of("user")
    assert bars[2].time.isoformat() in user and bars[3].time.isoformat() not in user
    assert "REFUSED (insufficient cash" in user

    result = session.result(Ending.COMPLETED)  # what the runner saves as the run's result
    assert result["trades"] == 2 and result["refused"] == 1
    assert result["decisions_by_outcome"] == {"trade": 3, "hold": 6}
    assert result["tokens_in"] == 120 * 12 and result["tokens_out"] == 30 * 12
    assert Decimal(result["cost"]) == Decimal("0.00075") + 2 * Decimal("0.00025") + 8 * table
    assert result["unknown_cost_decisions"] == 0
    events = event_log.read(run.id, count=1000)
    traded = [e.data for e in events if e.type is EventType.TRADE]
    assert [(e["step"], e["status"]) for e in traded] == [(0, "filled"), (1, "refused"),
                                                          (2, "filled")]


def test_timeouts_rate_limits_errors_and_bad_tool_calls_are_holds_and_the_run_goes_on(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/flaky")
    tries: dict[int, int] = {}

    def once_500_then_buy(request: ChatRequest) -> Reply:
        tries[1] = tries.get(1, 0) + 1
        return Reply.error(500) if tries[1] == 1 else Reply.call("buy", symbol="MSFT",
                                                                 quantity=5)

    fake.script("flaky", by_step({
        0: Reply.error(429),
        1: once_500_then_buy,
        2: Reply.text("too late").after(60),
        3: Reply(tool_calls=[("buy", '{"symbol": "MSFT", "quantity": ')]),
        4: Reply.error(500),
        5: Reply.call("buy", symbol="MSFT", quantity="many"),
        6: Reply.call("short_squeeze", symbol="MSFT"),
    }))
    failures_before = counter("tickrun_runner_llm_failures_total", reason="rate_limited")
    # The deadline covers three attempts (two retries) of a failing call: 0.6 s did not,
    # once, on a loaded machine. Step 2's answer comes far past it.
    deadline = 3.0
    session = session_for(store, event_log, run, llm_settings(
        fake, api_key, decision_timeout_seconds=deadline))
    began = time.monotonic()
    assert play(session) is Ending.COMPLETED
    assert time.monotonic() - began < 20

    d = store.list_decisions(run.id, limit=100)
    assert [(x.action, x.outcome, x.error) for x in d] == [
        ("hold", "error", "rate_limited"),
        ("buy", "trade", None),
        ("hold", "timeout", "timeout"),
        ("hold", "error", "malformed_tool_call"),
        ("hold", "error", "provider_error"),
        ("hold", "error", "malformed_tool_call"),
        ("hold", "error", "malformed_tool_call"),
        ("hold", "hold", None),
        ("hold", "hold", None),
    ]
    assert "rate limited by the provider (429) after 3 attempt(s)" in str(d[0].reasoning)
    # Held at its deadline, not when the answer came (60 s)
    assert str(d[2].reasoning).startswith("HOLD: ") and d[2].latency_ms < (deadline + 2) * 1000
    assert "does not parse" in str(d[3].reasoning)
    assert "provider error 500 after 3 attempt(s)" in str(d[4].reasoning)
    assert "bad arguments" in str(d[5].reasoning) and "short_squeeze" in str(d[6].reasoning)
    assert len([r for r in fake.requests if r.step == 0]) == 3  # retried twice, then HOLD
    trades = store.list_trades(run.id)
    assert [(t.step, t.side, t.quantity, t.filled) for t in trades] == [
        (1, Side.BUY, Decimal(5), True)]
    assert counter("tickrun_runner_llm_failures_total",
                   reason="rate_limited") == failures_before + 1
    result = session.result(Ending.COMPLETED)
    assert result["decisions_by_outcome"] == {"error": 5, "trade": 1, "timeout": 1, "hold": 2}


def test_two_runs_in_one_process_never_mix_tools_or_identities(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    a = llm_run(store, "openai/model-a", daily_spec(**JAN, decider="llm", symbols=["AAPL"]),
                user_id="user-a")
    b = llm_run(store, "openai/model-b", daily_spec(**JAN, decider="llm", symbols=["MSFT"]),
                user_id="user-b", cash=Decimal(50_000))
    wrong: list[str] = []

    def agent(symbol: str, other: str, quantity: int) -> Callable[[ChatRequest], Reply]:
        def script(request: ChatRequest) -> Reply:
            if other in request.text_of("system") + request.text_of("user"):
                wrong.append(f"{request.model} saw {other}")
            if request.last_role == "tool":
                return Reply.text(f"bought {quantity} {symbol}").after(0.005)
            return Reply.call("buy", symbol=symbol, quantity=quantity).after(0.005)
        return script

    fake.script("model-a", agent("AAPL", "MSFT", 1))
    fake.script("model-b", agent("MSFT", "AAPL", 2))
    settings = llm_settings(fake, api_key)
    sessions = [session_for(store, event_log, run, settings) for run in (a, b)]
    endings: list[Ending] = []
    threads = [threading.Thread(target=lambda s=s: endings.append(play(s))) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert endings == [Ending.COMPLETED, Ending.COMPLETED] and wrong == []
    for run, symbol, qty in ((a, "AAPL", 1), (b, "MSFT", 2)):
        trades = store.list_trades(run.id, limit=100)
        assert len(trades) == 9 and {(t.symbol, t.quantity) for t in trades} == {
            (symbol, Decimal(qty))}
        # Every tool result the agent saw is its own run's ledger.
        model = "model-a" if run is a else "model-b"
        seen = {r.last_tool_result for r in fake.requests_for(model) if r.last_role == "tool"}
        assert all(f'"cash_after": "{number(t.cash_after)}"' in "".join(seen) for t in trades)
        assert store.get_portfolio(run.id).holdings == {symbol: Decimal(9 * qty)}
    a_cash = {f'"cash_after": "{number(t.cash_after)}"' for t in store.list_trades(a.id)}
    assert not any(c in r.last_tool_result for r in fake.requests_for("model-b") for c in a_cash)


def test_a_replayed_run_reproduces_the_original_trades(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    spec = daily_spec(**JAN, decider="llm", symbols=["AAPL", "MSFT"])
    original = llm_run(store, "openai/trader", spec, cash=Decimal(20_000))
    fake.script("trader", by_step({
        0: Reply(tool_calls=[("buy", {"symbol": "AAPL", "quantity": 20}),
                             ("buy", {"symbol": "MSFT", "quantity": 30})]),
        2: Reply.call("buy", symbol="MSFT", quantity=100_000),  # refused: no cash
        4: Reply(tool_calls=[("sell", {"symbol": "AAPL", "quantity": 20}),
                             ("calculator", {"expression": "20000 / 3"})]),
        5: Reply.error(429),
        6: Reply.call("sell", symbol="MSFT", quantity=30),
    }))
    play(session_for(store, event_log, original, llm_settings(fake, api_key)))
    calls_before = len(fake.requests)

    replay_spec = spec.model_copy(update={"decider": DeciderKind.REPLAY,
                                          "decider_params": {"source_run_id": original.id}})
    replay = make_run(store, replay_spec, user_id=original.user_id, cash=Decimal(20_000),
                      model=store.get_model(original.model_id))
    assert play(session_for(store, event_log, replay)) is Ending.COMPLETED
    assert len(fake.requests) == calls_before  # no model call

    def ledger(run_id: int) -> list[tuple[Any, ...]]:
        return [(t.step, t.seq, t.side, t.symbol, t.quantity, t.price, t.status, t.reason)
                for t in store.list_trades(run_id, limit=100)]

    assert ledger(replay.id) == ledger(original.id) and len(ledger(original.id)) == 5
    theirs, ours = store.get_portfolio(original.id), store.get_portfolio(replay.id)
    assert (ours.cash, ours.holdings) == (theirs.cash, theirs.holdings)
    replayed = store.list_decisions(replay.id, limit=100)
    assert replayed[5].outcome == "error" and replayed[0].action == "buy"


def test_an_abandoned_decision_keeps_its_tool_trades_and_cannot_trade_late(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    from runner.deciders.llm import LlmDecider

    run = llm_run(store, "openai/dawdler")
    released: list[float] = []

    def after_the_abandonment(request: ChatRequest) -> Reply:
        """The second call is answered (a buy of 2) only once the loop has recorded the
        step abandoned, however slow the machine: its answer is late by construction."""
        deadline = time.monotonic() + 60
        while store.get_decision(run.id, 0) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        released.append(time.perf_counter())
        return Reply.call("buy", symbol="MSFT", quantity=2)

    fake.script("dawdler", by_step({0: Reply.call("buy", symbol="MSFT", quantity=1)},
                                   after_tools=after_the_abandonment))
    # The loop's deadline must cover the first call and its tool's trade (a few ms; over
    # 0.5 s on a loaded machine); the second call is held past it whatever it is.
    session = session_for(store, event_log, run, llm_settings(fake, api_key),
                          decision_timeout_seconds=3)
    # A decider whose own deadline is longer than the loop's: the loop abandons it.
    session.deciding.decider = LlmDecider(run=run, model=session.model, deadline_seconds=60,
                                          settings=llm_settings(fake, api_key))
    session.play_step(0)
    first = store.get_decision(run.id, 0)
    assert first is not None and (first.action, first.outcome) == ("buy", "timeout")
    assert "1 trade(s) made through tools" in str(first.reasoning)
    # Wait for the abandoned call itself to end (its thread is the decider pool's only
    # one), not for a while: by then its late second buy has come and been handled.
    assert session.deciding._pool is not None
    session.deciding._pool.shutdown(wait=True)
    late = fake.requests[1]  # the call the loop abandoned: its answer, a buy of 2, came
    assert late.last_role == "tool" and len(released) == 1
    assert late.answered_at is not None and late.answered_at >= released[0]
    assert [(t.step, t.seq, t.quantity) for t in store.list_trades(run.id)] == [
        (0, 0, Decimal(1))]
    session.close()
    replay = ReplayDecider(store, run.id, run.user_id, run.spec)
    assert [o.quantity for o in replay._tool_orders(0)] == [Decimal(1)]  # read per step


def test_a_restart_does_not_decide_again_a_step_whose_tools_traded(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    from runner.trading import TradingService

    run = llm_run(store, "openai/restarted")
    fake.script("restarted", by_step({0: Reply.call("buy", symbol="MSFT", quantity=7)}))
    started = run_status(store).start_attempt(run.id)
    # The first attempt's tools bought at step 0, then the pod died before the record.
    TradingService(store).execute(run.id, 0, 0, Order(Side.BUY, "MSFT", Decimal(3)),
                                  price=Decimal(100), bar_time=dt.datetime.now(dt.UTC))
    assert started.attempts == 1
    session = session_for(store, event_log, run, llm_settings(fake, api_key))
    assert session.run.attempts == 2
    assert play(session) is Ending.COMPLETED
    assert all(r.step != 0 for r in fake.requests)
    decision = store.get_decision(run.id, 0)
    assert decision is not None and decision.action == "buy" and decision.outcome == "trade"
    assert "before a restart" in str(decision.reasoning)
    assert [(t.step, t.quantity) for t in store.list_trades(run.id)] == [(0, Decimal(3))]


def test_no_api_key_in_logs_events_or_stored_records(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str, database_url: str,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    run = llm_run(store, "openai/talker")
    fake.script("talker", by_step({
        0: Reply.call("buy", symbol="MSFT", quantity=3),
        1: Reply.error(429), 2: Reply.error(500), 3: Reply(tool_calls=[("sell", "{oops")]),
        4: Reply.error(401),  # fails the run: its reason is checked with the rest
    }))
    settings = llm_settings(fake, api_key)
    session = session_for(store, event_log, run, settings)
    logging.getLogger("test").info("settings: %r %s", settings, settings)
    with pytest.raises(DeciderFailed, match="refused the key") as failed:
        play(session)
    assert store.get_decision(run.id, 3) is not None and store.get_run(run.id).steps_done == 4
    texts_failed = failed.value.reason + repr(failed.value.__cause__)

    texts = [r.getMessage() + repr(r.args) + str(r.exc_text) for r in caplog.records]
    texts.append(texts_failed)
    assert any("retry" in t for t in texts)  # the failure paths did log
    out, err = capfd.readouterr()
    events = [repr(e.data) for e in event_log.read(run.id, count=10_000)]
    for where, text in (("logs", "\n".join(texts)), ("stdout/stderr", out + err),
                        ("events", "\n".join(events)), ("database", dump_database(database_url))):
        assert api_key not in text, f"the API key leaked into {where}"
        assert api_key[8:24] not in text, f"part of the API key leaked into {where}"
    assert all(r.authorized for r in fake.requests)


def dump_database(url: str) -> str:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return "\n".join(repr(row) for t in tables
                             for row in conn.execute(f'SELECT * FROM "{t}"'))
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        return "\n".join(str(row[0]) for t in tables
                         for row in conn.execute(f'SELECT t::text FROM "{t}" t'))


@pytest.mark.slow
def test_sigterm_during_a_slow_llm_answer_stops_the_runner_within_the_budget(
        store: Store, runner_env: dict[str, str], fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/slow-thinker", intraday_spec(decider="llm"))
    fake.script("slow-thinker", [Reply.text("thinking...").after(120)])
    env = {**runner_env, "TICKRUN_LLM_BASE_URL": fake.base_url,
           "TICKRUN_LLM_API_KEY": api_key, "TICKRUN_RUNNER_STOP_BUDGET_SECONDS": "10"}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--run-id", str(run.id)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fake.wait_for_requests(1, timeout=90)
        time.sleep(0.3)  # well inside the call
        # as the API
        run_status(store).transition(run.id, RunStatus.STOPPING, reason="stop requested")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"  # stop budget is 10 s
    stopped = store.get_run(run.id)
    assert stopped.status is RunStatus.STOPPED and stopped.steps_done == 1
    decision = store.get_decision(run.id, 0)
    assert decision is not None and decision.action == "hold"
    assert decision.outcome == "timeout" and "stop requested" in str(decision.reasoning)
    assert api_key not in stderr and "decider" not in (stopped.status_reason or "")
    assert (stopped.result or {})["decider"] == "llm"


def test_openrouter_keeps_the_model_prefix_and_reports_cost(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    run = llm_run(store, "openai/gpt-4.1-mini")
    fake.default = Reply.text("Hold.", cost=0.0001)
    settings = llm_settings(fake, api_key, provider="openrouter")
    session = session_for(store, event_log, run, settings)
    assert play(session) is Ending.COMPLETED
    requests = fake.requests_for("openai/gpt-4.1-mini")
    assert len(requests) == 9 and requests[0].headers.get("x-title") == "tickrun"
    assert Decimal(session.result(Ending.COMPLETED)["cost"]) == Decimal("0.0009")


@pytest.mark.parametrize("setting, message", [
    ({}, "needs a provider key"),
    ({"api_key": SecretStr("k")}, "has no llm configured"),
])
def test_an_llm_run_without_a_key_or_a_model_is_refused(
        store: Store, setting: dict[str, Any], message: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import InvalidSpec

    for name in ("TICKRUN_LLM_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    model: Model = make_model(store, "user-a", f"m-{secrets.token_hex(3)}")
    run = make_run(store, daily_spec(**JAN, decider="llm"), model=model)
    with pytest.raises(InvalidSpec, match=message):
        build_decider(DeciderKind.LLM, run, model, store,
                      llm=LlmSettings(provider="openai", **setting))
