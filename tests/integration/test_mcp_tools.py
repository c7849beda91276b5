"""Outside tools over MCP: a real MCP server (the SDK's FastMCP over streamable HTTP,
served by uvicorn in a thread) and the local OpenAI-compatible server scripted to call
its tools through the real ChatOpenAI client. Every call carries the decided bar's end
in its `_meta`; recorded calls say which server answered and whether it is
point-in-time; a header's value comes from the runner's environment and is never
logged or recorded; a server that cannot be reached leaves the run playing with
tickrun's own tools; a tool's error and a server that does not answer are answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
from mcp.server.fastmcp import Context, FastMCP

from core.errors import InvalidSpec
from core.eventlog import EventLog
from core.spec import DeciderKind, RunSpec
from core.store import Store
from runner.deciders.factory import build_decider
from runner.deciders.mcp_tools import META_AS_OF, META_RUN_ID
from runner.llm_settings import LlmSettings
from runner.session import Ending
from runner.shutdown import StopSignal
from tests.factories import daily_spec, intraday_spec
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply
from tests.integration.test_llm_decider import (
    dump_database,
    llm_run,
    llm_settings,
    play,
    session_for,
)
from tests.integration.test_llm_orders import answers

KEY_VARIABLE = "MCP_TEST_RESEARCH_KEY"
SESSION = dt.date(2025, 3, 3)  # opens 09:30 New York, 14:30 UTC
STEPS = 4  # decisions of that session played before the run is stopped
MINUTE = dt.timedelta(minutes=1)
# The slow tool answers after SLOW_SECONDS; a server with PATIENCE seconds gives up first
# (PATIENCE leaves room for a loaded machine: a call takes ~60 ms here).
SLOW_SECONDS, PATIENCE = 8.0, 2.0
# Three sessions, for runs whose calls' instants are not what is checked.
DAYS = {"start": dt.date(2024, 1, 3), "end": dt.date(2024, 1, 5)}
# The test's MCP server runs in this process: what it logs of a request is not the runner's.
THE_SERVERS_LOGGERS = ("mcp.server", "uvicorn", "sse_starlette")


@dataclass
class Research:
    """A research MCP server: what each call received, and how to reach it."""

    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)


def research_app(seen: Research) -> FastMCP:
    mcp = FastMCP("research")

    def received(ctx: Context, tool: str) -> dict[str, Any]:
        meta = ctx.request_context.meta
        request = ctx.request_context.request
        call = {"tool": tool, "meta": dict(meta.model_extra or {}) if meta else {},
                "key": request.headers.get("x-research-key") if request else None}
        seen.calls.append(call)
        return call

    @mcp.tool(description="Headlines about a symbol, as known at the call's as-of instant")
    def news(symbol: str, ctx: Context) -> dict[str, str]:  # structured content
        as_of = received(ctx, "news")["meta"].get(META_AS_OF, "unknown")
        return {"symbol": symbol, "known_at": as_of,
                "headline": f"{symbol}: a quiet session until {as_of}"}

    @mcp.tool(description="Fails: the archive has nothing for that day")
    def archive(day: str, ctx: Context) -> str:
        key = received(ctx, "archive")["key"]
        raise ValueError(f"no archive for {day} (key {key} is valid)")  # quotes the secret

    @mcp.tool(description="Answers after a long while")
    async def slow(ctx: Context) -> str:
        received(ctx, "slow")
        await asyncio.sleep(SLOW_SECONDS)
        return "late"

    return mcp


@pytest.fixture
def research() -> Iterator[Research]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, bound before the server takes it
    seen = Research(url=f"http://127.0.0.1:{sock.getsockname()[1]}/mcp")
    server = uvicorn.Server(uvicorn.Config(
        research_app(seen).streamable_http_app(), log_level="warning",
        timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="research-mcp")
    thread.start()
    began = time.monotonic()
    while not server.started:
        assert thread.is_alive() and time.monotonic() - began < 10, "MCP server did not start"
        time.sleep(0.01)
    yield seen
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def research_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The header's value, in the runner's environment (as a Secret would put it)."""
    value = f"rk-{secrets.token_hex(16)}"
    monkeypatch.setenv(KEY_VARIABLE, value)
    return value


# The operator's allow-list: the test's servers listen on this machine.
ALLOWED = ["127.0.0.1"]


def allowed_llm(fake: FakeOpenAI, api_key: str) -> LlmSettings:
    return llm_settings(fake, api_key, mcp_allowed_hosts=ALLOWED)


def unreachable_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"  # closed: nothing listens there


def server(name: str, url: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "url": url, **kw}


def _days_spec(**kw: Any) -> RunSpec:
    return daily_spec(**{**DAYS, **kw}, decider="llm")


def test_every_call_carries_the_bars_end_and_the_record_says_which_server_answered(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str,
        research: Research, research_key: str, database_url: str,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    run = llm_run(store, "openai/researcher", intraday_spec(SESSION, decider="llm"),
                  parameters={"max_tool_calls": 3, "mcp_servers": [server(
                      "research", research.url, point_in_time=True, timeout_seconds=5,
                      headers={"X-Research-Key": KEY_VARIABLE})]})
    stop = StopSignal()
    tools_offered: list[list[str]] = []
    systems: set[str] = set()

    def script(request: ChatRequest) -> Reply:
        done = answers(request)
        systems.add(request.text_of("system"))
        if done:
            return Reply.text(f"Read: {done[-1].get('status')}.")
        tools_offered.append(request.tools)
        if request.step == STEPS:  # enough: the run stops after this step
            stop.request("test")
            return Reply.text("Holding.")
        if request.step == 1:  # an outside call beside one of tickrun's own
            return Reply(tool_calls=[("research__news", {"symbol": "AAPL"}), ("portfolio", {})])
        if request.step == 2:
            return Reply.call("research__archive", day="2025-03-03")
        return Reply.call("research__news", symbol="AAPL")

    fake.script("researcher", script)
    session = session_for(store, event_log, run, allowed_llm(fake, api_key), stop=stop)
    assert play(session) is Ending.STOPPED

    decisions = [d for d in store.list_decisions(run.id, limit=100) if d.step < STEPS]
    assert [d.outcome for d in decisions] == ["hold"] * STEPS
    # (a) Each call carried its decision's as-of instant: the end of the decided minute
    # bar (its start + 1 minute; the session opens at 14:30 UTC that day).
    calls = research.calls
    assert [c["tool"] for c in calls] == ["news", "news", "archive", "news"]
    for call, decision in zip(calls, decisions, strict=True):
        assert call["meta"][META_AS_OF] == (decision.bar_time + MINUTE).isoformat()
        assert call["meta"][META_RUN_ID] == run.id
    assert [c["meta"][META_AS_OF] for c in calls] == [
        f"2025-03-03T14:3{m}:00+00:00" for m in (1, 2, 3, 4)]

    # (b) The recorded calls of the outside tool say its server and point_in_time;
    # tickrun's own tools are recorded as before.
    news = decisions[1].tool_calls[0]
    assert (news["name"], news["server"], news["point_in_time"]) == (
        "research__news", "research", True)
    assert news["args"] == {"symbol": "AAPL"} and news["result"]["status"] == "ok"
    assert news["result"]["data"]["known_at"] == "2025-03-03T14:32:00+00:00"
    assert isinstance(news["ms"], float)
    own = decisions[1].tool_calls[1]
    assert own["name"] == "portfolio" and "server" not in own and "point_in_time" not in own
    assert all("research__news" in offered and "buy" in offered for offered in tools_offered)
    (system,) = systems  # byte-identical at every step
    assert "research__<tool>: outside tools of server research, point-in-time" in system

    # (e) A tool's error is its answer; the step went on and ended as a HOLD.
    failed = decisions[2].tool_calls[0]
    assert failed["result"]["status"] == "error" and failed["server"] == "research"
    assert "no archive for 2025-03-03" in failed["result"]["reason"]
    assert decisions[2].error is None and "Read: error." in str(decisions[2].reasoning)

    # (c) The header's value reached the server from the environment, and nowhere else.
    assert [c["key"] for c in calls] == [research_key] * 4
    assert "***" in failed["result"]["reason"]  # the server quoted it back: blanked
    texts = [r.getMessage() + repr(r.args) + str(r.exc_text) for r in caplog.records
             if not r.name.startswith(THE_SERVERS_LOGGERS)]
    out, err = capfd.readouterr()
    recorded = json.dumps([d.tool_calls for d in decisions])
    stored = recorded + dump_database(database_url)
    events = [repr(e.data) for e in event_log.read(run.id, count=10_000)]
    prompts = json.dumps([r.body for r in fake.requests])
    for where, text in (("logs", "\n".join(texts)), ("stdout/stderr", out + err),
                        ("recorded calls and the database", stored),
                        ("events", "\n".join(events)), ("the LLM's requests", prompts)):
        assert research_key not in text, f"the header's value leaked into {where}"
    assert KEY_VARIABLE not in recorded  # the model keeps the variable's name, no more
    assert any("research__archive" in t for t in texts)  # the failure path did log


def test_an_unreachable_server_leaves_the_run_playing_with_tickruns_own_tools(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str,
        research: Research, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gone = unreachable_url()
    run = llm_run(store, "openai/stubborn", _days_spec(), cash=Decimal(10_000), parameters={
        "mcp_servers": [server("gone", gone, timeout_seconds=2),
                        server("research", research.url)]})
    offered: list[list[str]] = []

    def script(request: ChatRequest) -> Reply:
        if answers(request):
            return Reply.text("Done.")
        offered.append(request.tools)
        if request.step == 0:
            return Reply.call("buy", symbol="MSFT", quantity=2)
        if request.step == 1:
            return Reply.call("research__news", symbol="MSFT")
        return Reply.text("Holding.")

    fake.script("stubborn", script)
    session = session_for(store, event_log, run, allowed_llm(fake, api_key))
    assert play(session) is Ending.COMPLETED

    assert all(not any(t.startswith("gone__") for t in tools) for tools in offered)
    assert all({"buy", "research__news"} <= set(tools) for tools in offered)
    trades = store.list_trades(run.id)
    assert [(t.step, t.quantity) for t in trades] == [(0, Decimal(2))]
    news = store.list_decisions(run.id, limit=10)[1].tool_calls[0]
    assert (news["server"], news["point_in_time"], news["result"]["status"]) == (
        "research", False, "ok")
    # Logged once, when the tools were listed (not at every step), with its reason.
    absent = [r.getMessage() for r in caplog.records if "'gone'" in r.getMessage()]
    assert len(absent) == 1 and "absent from this run" in absent[0]
    assert "cannot reach the server" in absent[0]
    system = fake.requests[0].text_of("system")
    assert "gone__<tool>: outside tools of server gone, NOT point-in-time" in system


def test_a_server_that_does_not_answer_in_time_is_an_answer_not_a_failed_step(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str,
        research: Research) -> None:
    run = llm_run(store, "openai/patient", _days_spec(end=dt.date(2024, 1, 4)), parameters={
        "mcp_servers": [server("research", research.url, timeout_seconds=PATIENCE)]})

    def script(request: ChatRequest) -> Reply:
        done = answers(request)
        if done:
            return Reply.text(f"The research said: {done[-1]['status']}.")
        if request.step == 0:
            return Reply.call("research__slow")
        return Reply.call("research__news", symbol="MSFT")

    fake.script("patient", script)
    session = session_for(store, event_log, run, allowed_llm(fake, api_key))
    began = time.monotonic()
    assert play(session) is Ending.COMPLETED
    assert time.monotonic() - began < SLOW_SECONDS  # the run did not wait for the answer

    slow, after = store.list_decisions(run.id, limit=10)
    call = slow.tool_calls[0]
    assert call["result"]["status"] == "error"
    assert f"no answer within {PATIENCE:g}s" in call["result"]["reason"]
    assert PATIENCE * 1000 <= call["ms"] < SLOW_SECONDS * 1000
    assert slow.outcome == "hold" and slow.error is None
    assert "The research said: error." in str(slow.reasoning)
    assert after.tool_calls[0]["result"]["status"] == "ok"  # the next step is served


@pytest.mark.parametrize(("entry", "why"), [
    ({"name": "Research", "url": "http://127.0.0.1:1/mcp"}, "name"),
    ({"name": "r", "url": "ftp://127.0.0.1/mcp"}, "url"),
    ({"name": "r", "url": "https://user:pw@example.com/mcp"}, "url"),
    ({"name": "r", "url": "https://example.com/mcp", "headers": {"X-Key": "TICKRUN_DATABASE_URL"}},
     "headers"),
    ({"name": "r", "url": "https://example.com/mcp", "headers": {"Host": "MCP_HOST"}},
     "headers"),
    ({"name": "r", "url": "https://example.com/mcp", "token": "sk-..."}, "token"),
    ({"name": "r", "url": "https://example.com/mcp", "timeout_seconds": 0}, "timeout_seconds"),
])
def test_a_bad_server_entry_is_refused_before_the_run_plays(
        store: Store, fake: FakeOpenAI, api_key: str, entry: dict[str, Any], why: str) -> None:
    run = llm_run(store, "openai/any", parameters={"mcp_servers": [entry]})
    model = store.get_model(run.model_id)
    with pytest.raises(InvalidSpec, match=f"bad llm parameters .*mcp_servers.*{why}"):
        build_decider(DeciderKind.LLM, run, model, store, llm=allowed_llm(fake, api_key))


def test_server_names_are_unique(store: Store, fake: FakeOpenAI, api_key: str) -> None:
    twice = [server("news", "https://a.example.com/mcp"),
             server("news", "https://b.example.com/mcp")]
    run = llm_run(store, "openai/any", parameters={"mcp_servers": twice})
    with pytest.raises(InvalidSpec, match="server names must be unique: news"):
        build_decider(DeciderKind.LLM, run, store.get_model(run.model_id), store,
                      llm=allowed_llm(fake, api_key))



def test_a_server_on_a_host_the_operator_does_not_allow_is_never_called(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str,
        research: Research, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A model picks the URL and which MCP_* secrets go there: only hosts the operator
    lists in TICKRUN_LLM_MCP_ALLOWED_HOSTS qualify (none by default)."""
    monkeypatch.setenv("TICKRUN_LLM_MCP_ALLOWED_HOSTS", " MCP.example.com, 10.0.0.7:8443 ")
    assert LlmSettings().mcp_allowed_hosts == ["mcp.example.com", "10.0.0.7:8443"]
    run = llm_run(store, "openai/fenced", _days_spec(), parameters={
        "mcp_servers": [server("research", research.url, point_in_time=True)]})
    offered: list[list[str]] = []

    def script(request: ChatRequest) -> Reply:
        offered.append(request.tools)
        return Reply.text("Holding.")

    fake.script("fenced", script)
    for allowed in ([], ["mcp.example.com", "127.0.0.2"]):
        caplog.clear()
        session = session_for(store, event_log, run if not allowed else llm_run(
            store, "openai/fenced", _days_spec(), parameters={
                "mcp_servers": [server("research", research.url)]}),
            llm_settings(fake, api_key, mcp_allowed_hosts=allowed))
        assert play(session) is Ending.COMPLETED
        assert any("not in TICKRUN_LLM_MCP_ALLOWED_HOSTS" in r.getMessage()
                   for r in caplog.records)
    assert offered and all(not any(t.startswith("research__") for t in tools)
                           for tools in offered)
    assert "research__" not in fake.requests[0].text_of("system")
    assert research.calls == []
