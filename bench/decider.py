"""`python -m bench decider`: what the llm decider costs per step beyond the model.

A local OpenAI-compatible server (tests/fakes) answers at once; a 390-step intraday
session on SQLite runs with the real ChatOpenAI client. Per step, the decider's
overhead is the decision's latency (as the session loop measures it: thread handoff,
prompt, tool binding, HTTP, parsing, tools and their trades) minus the time the server
spent answering that step's requests (the "model's own latency", here ~0). Two
scenarios: an agent that only answers (one model call per step), and one that buys a
share through the buy tool every step (two model calls and a ledger transaction).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench._support import emit, percentile
from core.eventlog.sqlite_log import SqliteEventLog
from core.spec import DeciderKind, RunSpec
from core.status import RunStatus
from core.store.sqlite import SqliteStore
from runner.deciders.factory import build_decider
from runner.events import EventPublisher
from runner.llm_settings import LlmSettings
from runner.marketdata import market_data_for, timeline_for
from runner.session import Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal

INTRADAY = {"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03", "decider": "llm",
            "initial_cash": "10000000", "data": "synthetic"}
KEY = "sk-bench-not-a-real-key"


def scenario(db: Path, fake: Any, name: str, script: Any) -> dict[str, Any]:
    model_name = f"bench-{name}"
    fake.script(model_name, script)
    store = SqliteStore(db)
    spec = RunSpec.model_validate(INTRADAY)
    model = store.create_model("bench", f"{name}-{time.time_ns()}", llm=f"openai/{model_name}")
    run, _ = store.create_run("bench", model.id, spec, spec.step_count())
    store.transition(run.id, RunStatus.ADMITTED)
    run = store.start_attempt(run.id)
    settings = RunnerSettings(recent_trades=20)
    llm = LlmSettings(provider="openai", base_url=fake.base_url, api_key=SecretStr(KEY))
    decider = build_decider(DeciderKind.LLM, run, model, store, llm=llm,
                            decision_timeout_seconds=settings.decision_timeout_seconds)
    timeline = timeline_for(spec)
    bars = {s: market_data_for(spec, store, settings.data_dir).bars(s, timeline)
            for s in spec.symbols}
    session = Session(store=store, publisher=EventPublisher(SqliteEventLog(store), run.id),
                      run=run, model=model, decider=decider, timeline=timeline, bars=bars,
                      stop=StopSignal(), settings=settings)
    began = time.perf_counter()
    session.play()
    wall = time.perf_counter() - began
    session.close()

    server_ms: dict[int, float] = defaultdict(float)
    calls: dict[int, int] = defaultdict(int)
    for request in fake.requests_for(model_name):
        if request.step is not None and request.answered_at is not None:
            server_ms[request.step] += (request.answered_at - request.received_at) * 1000
            calls[request.step] += 1
    decisions = store.list_decisions(run.id, limit=10_000)
    overhead = [d.latency_ms - server_ms[d.step] for d in decisions[1:]]  # skip warm-up
    outcomes = {d.outcome for d in decisions}
    trades = len(store.list_trades(run.id, limit=10_000))
    return {
        f"{name}_steps": len(decisions),
        f"{name}_model_calls_per_step": round(statistics.mean(calls.values()), 2),
        f"{name}_trades": trades,
        f"{name}_outcomes": sorted(outcomes),
        f"{name}_first_step_ms": round(decisions[0].latency_ms, 2),
        f"{name}_server_ms_per_step": round(statistics.mean(server_ms.values()), 3),
        f"{name}_overhead_p50_ms": round(percentile(overhead, 50), 2),
        f"{name}_overhead_p99_ms": round(percentile(overhead, 99), 2),
        f"{name}_overhead_mean_ms": round(statistics.mean(overhead), 2),
        f"{name}_session_ms_per_step": round(wall / len(decisions) * 1000, 2),
    }


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fakes.openai_server import ChatRequest, Reply, fake_openai

    def trader(request: ChatRequest) -> Reply:
        if request.last_role == "tool":
            return Reply.text("Bought one share.")
        return Reply.call("buy", symbol="AAPL", quantity=1)

    tmp = Path(tempfile.mkdtemp(prefix="tickrun-bench-decider-"))
    SqliteStore(tmp / "bench.db").migrate()
    with fake_openai(KEY) as fake:
        result: dict[str, Any] = {"bench": "decider"}
        result.update(scenario(tmp / "bench.db", fake, "hold",
                               lambda r: Reply.text("No signal: hold.")))
        result.update(scenario(tmp / "bench.db", fake, "tool_trade", trader))
    for key, value in result.items():
        if key != "bench":
            print(f"{key:34} {value}", file=sys.stderr)
    emit(result)
    return 0
