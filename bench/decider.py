"""`python -m bench decider`: what the llm decider costs per step beyond the model.

A local OpenAI-compatible server (tests/fakes) answers at once; a 390-step intraday
session on SQLite runs with the real ChatOpenAI client. Per step, the decider's
overhead is the decision's latency (as the session loop measures it: thread handoff,
prompt, tool binding, HTTP, parsing, tools and their trades) minus the time the server
spent answering that step's requests (the "model's own latency", here ~0). Two
scenarios: an agent that only answers (one model call per step), and one that buys a
share through the buy tool every step (two model calls and a ledger transaction).

Prompt tokens and caching: the fake reports usage the way OpenAI would, so the recorded
decisions show what a real run would. Prompt tokens are estimated at 4 characters a
token over the tools and the messages; the cached tokens are those of the longest
prefix the request shares with the model's previous request, in 128-token blocks, and
only for prompts of at least 1024 tokens (OpenAI's prompt caching rules). Reported per
scenario: prompt tokens per decision (all of its model calls), the cached share of
them, and the size of the stable prefix (tools and system prompt) every step repeats.

Shared rate limit: twenty daily runs play at once on one provider key that the fake
limits to 5 requests/s (a token bucket of a second's worth that answers 429 beyond it);
their deciders share the key's limit (runner/llm_ratelimit.py, in-process here, the same
math as the Redis one). Reported: decisions/s and their ratio to the limit (the goal:
within 10% of it), the 429s the fake sent, the decisions that were not made (errors,
timeouts), and how far apart the runs finished (fair sharing finishes them together).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench._support import admit, emit, percentile, start
from core.eventlog.sqlite_log import SqliteEventLog
from core.records import Model
from core.spec import DeciderKind, RunSpec
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
CHARS_PER_TOKEN = 4
CACHE_MIN_TOKENS = 1024  # OpenAI caches no shorter prompt
CACHE_BLOCK_TOKENS = 128  # and serves a cached prefix in blocks of this many tokens


class PromptCache:
    """Usage as OpenAI's prompt caching would report it (see the module's docstring)."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}
        self.stable_prefix_tokens: dict[str, int] = {}

    def wrap(self, script: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def answer(request: Any) -> Any:
            tokens_in, cached = self._usage(request.model, request.body)
            return dataclasses.replace(script(request), tokens_in=tokens_in,
                                       tokens_cached=cached)
        return answer

    def _usage(self, model: str, body: dict[str, Any]) -> tuple[int, int]:
        tools = json.dumps(body.get("tools", []))
        messages = [json.dumps(m, sort_keys=True) for m in body.get("messages", [])]
        text = tools + "".join(messages)
        if messages:
            self.stable_prefix_tokens[model] = _tokens(len(tools) + len(messages[0]))
        shared = _tokens(_common_prefix(self._last.get(model, ""), text))
        self._last[model] = text
        tokens = _tokens(len(text))
        if tokens < CACHE_MIN_TOKENS or shared < CACHE_MIN_TOKENS:
            return tokens, 0
        return tokens, shared // CACHE_BLOCK_TOKENS * CACHE_BLOCK_TOKENS


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection (slices compare in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def scenario(db: Path, fake: Any, name: str, script: Any) -> dict[str, Any]:
    model_name = f"bench-{name}"
    cache = PromptCache()
    fake.script(model_name, cache.wrap(script))
    store = SqliteStore(db)
    spec = RunSpec.model_validate(INTRADAY)
    model = store.create_model("bench", f"{name}-{time.time_ns()}", llm=f"openai/{model_name}")
    run, _ = store.create_run("bench", model.id, spec, spec.step_count())
    admit(store, run.id)
    run = start(store, run.id, DeciderKind.LLM.value)
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
    prompt_tokens = sum(d.tokens_in for d in decisions)
    cached_tokens = sum(d.tokens_cached for d in decisions)
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
        f"{name}_prompt_tokens_per_decision": round(prompt_tokens / len(decisions), 1),
        f"{name}_cached_share": round(cached_tokens / prompt_tokens, 3) if prompt_tokens else 0,
        f"{name}_stable_prefix_tokens": cache.stable_prefix_tokens.get(model_name),
    }


SHARED_RUNS = 20
SHARED_LIMIT_PER_SECOND = 5.0
SHARED_KEY = "sk-bench-shared-limit-not-a-real-key"  # a key of its own: its own limit
SHARED_DAILY = {"mode": "daily", "symbols": ["AAPL"], "start": "2024-01-02",
                "end": "2024-01-12", "decider": "llm", "initial_cash": "100000",
                "data": "synthetic"}  # 9 steps: 180 decisions, about 36 s at 5/s


def shared_limit(db: Path, fake: Any) -> dict[str, Any]:
    """Twenty runs at once under one limit (see the module's docstring)."""
    store = SqliteStore(db)
    spec = RunSpec.model_validate(SHARED_DAILY)
    model = store.create_model("bench", f"shared-{time.time_ns()}", llm="openai/bench-shared")
    llm = LlmSettings(provider="openai", base_url=fake.base_url, api_key=SecretStr(SHARED_KEY))
    sessions = [_llm_session(store, spec, model, llm) for _ in range(SHARED_RUNS)]
    finished: list[float] = []

    def play(session: Session) -> None:
        session.play()
        finished.append(time.perf_counter())

    threads = [threading.Thread(target=play, args=(s,)) for s in sessions]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    for session in sessions:
        session.close()
    decisions = [d for s in sessions for d in store.list_decisions(s.run.id, limit=10_000)]
    per_second = len(decisions) / wall
    latency = [d.latency_ms for d in decisions]
    return {
        "shared_limit_runs": SHARED_RUNS,
        "shared_limit_per_second": SHARED_LIMIT_PER_SECOND,
        "shared_limit_decisions": len(decisions),
        "shared_limit_decisions_per_second": round(per_second, 3),
        "shared_limit_ratio": round(per_second / SHARED_LIMIT_PER_SECOND, 3),
        "shared_limit_429s": fake.rate_limited,
        "shared_limit_errors": sum(d.outcome != "hold" for d in decisions)
                               + SHARED_RUNS * len(timeline_for(spec)) - len(decisions),
        "shared_limit_decision_p50_ms": round(percentile(latency, 50), 1),
        "shared_limit_decision_p99_ms": round(percentile(latency, 99), 1),
        "shared_limit_finish_spread_s": round(max(finished) - min(finished), 2),
    }


def _llm_session(store: SqliteStore, spec: RunSpec, model: Model, llm: LlmSettings) -> Session:
    run, _ = store.create_run("bench", model.id, spec, spec.step_count())
    admit(store, run.id)
    run = start(store, run.id, DeciderKind.LLM.value)
    settings = RunnerSettings(recent_trades=20)
    decider = build_decider(DeciderKind.LLM, run, model, store, llm=llm,
                            decision_timeout_seconds=settings.decision_timeout_seconds)
    timeline = timeline_for(spec)
    provider = market_data_for(spec, store, settings.data_dir)
    return Session(store=store, publisher=EventPublisher(SqliteEventLog(store), run.id),
                   run=run, model=model, decider=decider, timeline=timeline,
                   bars={s: provider.bars(s, timeline) for s in spec.symbols},
                   stop=StopSignal(), settings=settings)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fakes.openai_server import ChatRequest, FakeRateLimit, Reply, fake_openai

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
    limit = FakeRateLimit(requests_per_second=SHARED_LIMIT_PER_SECOND)
    with fake_openai(SHARED_KEY, rate_limit=limit,
                     default=Reply.text("No signal: hold.").after(0.02)) as fake:
        result.update(shared_limit(tmp / "bench.db", fake))
    for key, value in result.items():
        if key != "bench":
            print(f"{key:34} {value}", file=sys.stderr)
    emit(result)
    return 0
