"""The `llm` decider: a LangChain ChatOpenAI agent with tools bound to one run.

Per step: the system prompt (the run's rules), the step's context, and a bounded
tool-calling loop in which buy/sell trade through the step's broker. Everything that
can go wrong with a provider (a deadline passed, a stop request, 429, 5xx, a dropped
connection, a tool call that does not parse) ends the step as a HOLD whose reason is
recorded and counted; transient failures are retried with backoff while the
decision's deadline allows.

The model is called through the async client on an event loop owned by the calling
thread (the session's decider thread), so a stop request or the deadline cancels the
HTTP request at once instead of waiting for a socket timeout: SIGTERM never waits on
a slow provider. Each thread gets its own loop, HTTP client and ChatOpenAI, and each
run its own decider: no state is shared between runs, and nothing reads identity from
the environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import openai
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, ToolException
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from core.records import Model, Run, Trade
from runner import telemetry
from runner.deciders.base import DecisionResult, StepContext
from runner.deciders.llm_prompt import step_message, system_prompt
from runner.deciders.llm_tools import build_tools
from runner.llm_settings import LlmSettings, Provider

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = frozenset({"rate_limited", "server_error", "timeout", "connection_error"})


class LlmParams(BaseModel):
    """The agent's knobs, from the model record's `parameters` (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000,
                                   description="Output tokens per model call")
    max_tool_calls: int = Field(default=5, ge=0, le=50, description="Tool calls per step")
    decision_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Lower the decision deadline for this model")
    context_bars: int = Field(default=30, ge=1, le=1000,
                              description="Bars per symbol shown in the step message")
    max_lookback: int = Field(default=390, ge=1, le=10_000,
                              description="Most bars price_history returns")


class StepAbandoned(Exception):
    """The step ends as a HOLD: outcome, a short error code, and a reason for people."""

    def __init__(self, outcome: str, error: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.error = error
        self.reason = reason


@dataclass
class _Tally:
    """What one decision consumed and did, for its record."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = None
    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    attempts: int = 0

    def add(self, message: AIMessage) -> None:
        usage = message.usage_metadata
        if usage is not None:
            self.tokens_in += int(usage.get("input_tokens", 0))
            self.tokens_out += int(usage.get("output_tokens", 0))
        reported = (message.response_metadata.get("token_usage") or {}).get("cost")
        if reported is not None:
            self.cost = (self.cost or Decimal(0)) + Decimal(str(reported))
        if text := _text_of(message):
            self.texts.append(text)

    def result(self, note: str | None = None, failure: StepAbandoned | None = None
               ) -> DecisionResult:
        sides = sorted({t.side.value for t in self.trades})
        reasoning = "\n".join(self.texts)
        if failure is not None:
            reasoning = f"HOLD: {failure.reason}" + (f"\n{reasoning}" if reasoning else "")
        elif note:
            reasoning = f"{reasoning}\n({note})" if reasoning else note
        if self.trades and failure is not None:
            reasoning += f"\n({len(self.trades)} trade(s) made through tools before that)"
        outcome = failure.outcome if failure else ("trade" if self.trades else "hold")
        return DecisionResult(
            action=",".join(sides) or "hold", reasoning=reasoning or "no reasoning given",
            outcome=outcome, tokens_in=self.tokens_in, tokens_out=self.tokens_out,
            cost=self.cost, tool_calls=self.tool_calls,
            error=failure.error if failure else None, traded_by_tools=len(self.trades))


@dataclass
class _ThreadClient:
    loop: asyncio.AbstractEventLoop
    http: openai.DefaultAsyncHttpxClient
    chat: ChatOpenAI


class LlmDecider:
    name = "llm"
    blocking = True

    def __init__(self, *, run: Run, model: Model, settings: LlmSettings,
                 deadline_seconds: float, poll_seconds: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not model.llm:
            raise ValueError(f"model {model.signature!r} names no llm")
        if not settings.available or settings.api_key is None:
            raise ValueError("no LLM API key is configured")
        self.params = LlmParams.model_validate(model.parameters or {})
        self.settings = settings
        self.model_name = settings.model_name(model.llm)
        limit = self.params.decision_timeout_seconds
        self.deadline_seconds = min(deadline_seconds, limit) if limit else deadline_seconds
        self.system = system_prompt(run, model, max_tool_calls=self.params.max_tool_calls)
        self._poll = poll_seconds
        self._clock = clock
        self._local = threading.local()
        self._clients: list[_ThreadClient] = []
        self._lock = threading.Lock()

    # -- the Decider interface ---------------------------------------------------------
    def decide(self, ctx: StepContext) -> DecisionResult:
        client = self._client()
        return client.loop.run_until_complete(self._decide(ctx, client.chat))

    def close(self) -> None:
        """Close each thread's HTTP client and loop (a still-busy one is left alone)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            if client.loop.is_running():
                continue
            client.loop.run_until_complete(client.http.aclose())
            client.loop.close()

    # -- one decision ------------------------------------------------------------------
    async def _decide(self, ctx: StepContext, chat: ChatOpenAI) -> DecisionResult:
        deadline = self._clock() + self.deadline_seconds
        tally = _Tally()
        tools = {t.name: t for t in build_tools(ctx, max_lookback=self.params.max_lookback,
                                                 on_trade=tally.trades.append)}
        bound = chat.bind_tools(list(tools.values()))
        messages: list[BaseMessage] = [
            SystemMessage(self.system),
            HumanMessage(step_message(ctx, context_bars=self.params.context_bars))]
        budget = self.params.max_tool_calls
        try:
            for _ in range(budget + 1):
                answer = await self._call(bound, messages, deadline, ctx, tally)
                tally.add(answer)
                _check_well_formed(answer, tools)
                if not answer.tool_calls:
                    return self._done(ctx, tally)
                messages.append(answer)
                for call in answer.tool_calls:
                    if len(tally.tool_calls) >= budget:
                        note = f"stopped at the limit of {budget} tool calls per step"
                        tally.tool_calls.append({"name": call["name"], "args": call["args"],
                                                 "result": {"status": "not_executed"}})
                        return self._done(ctx, tally, note)
                    self._check_time(ctx, deadline)
                    messages.append(self._run_tool(tools[call["name"]], call, tally))
            return self._done(ctx, tally, f"stopped at the limit of {budget} tool calls")
        except StepAbandoned as failure:
            telemetry.LLM_FAILURES.labels(failure.error).inc()
            log.warning("step %d: HOLD (%s): %s", ctx.step, failure.error, failure.reason)
            return self._done(ctx, tally, failure=failure)

    def _done(self, ctx: StepContext, tally: _Tally, note: str | None = None,
              failure: StepAbandoned | None = None) -> DecisionResult:
        telemetry.TOKENS.labels("input").inc(tally.tokens_in)
        telemetry.TOKENS.labels("output").inc(tally.tokens_out)
        if tally.cost:
            telemetry.LLM_COST.inc(float(tally.cost))
        result = tally.result(note, failure)
        log.debug("step %d: %s (%s), %d+%d tokens, %d tool call(s)", ctx.step, result.action,
                  result.outcome, tally.tokens_in, tally.tokens_out, len(tally.tool_calls))
        return result

    def _run_tool(self, tool: BaseTool, call: ToolCall, tally: _Tally) -> ToolMessage:
        began = time.perf_counter()
        try:
            output = tool.invoke(call["args"])
        except (ValidationError, ToolException) as exc:
            raise StepAbandoned("error", "malformed_tool_call",
                                f"tool call {call['name']}({_short(call['args'])}) has bad "
                                f"arguments: {_first_line(exc)}") from exc
        telemetry.LLM_TOOL_CALLS.labels(tool.name).inc()
        tally.tool_calls.append({"name": tool.name, "args": call["args"], "result": output,
                                 "ms": round((time.perf_counter() - began) * 1000, 3)})
        return ToolMessage(json.dumps(output), tool_call_id=call["id"], name=tool.name)

    def _check_time(self, ctx: StepContext, deadline: float) -> None:
        if ctx.stop_requested():
            raise StepAbandoned("timeout", "stopped", "stop requested during the decision")
        if self._clock() >= deadline:
            raise StepAbandoned("timeout", "timeout",
                                f"no decision within {self.deadline_seconds:g}s")

    # -- calling the model -------------------------------------------------------------
    async def _call(self, bound: Runnable[LanguageModelInput, BaseMessage],
                    messages: Sequence[BaseMessage], deadline: float, ctx: StepContext,
                    tally: _Tally) -> AIMessage:
        """One model answer: retried while transient and inside the deadline."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: _kind(exc) in TRANSIENT),
            wait=self._backoff,
            stop=lambda state: (state.attempt_number > self.settings.max_retries
                                or self._clock() + state.upcoming_sleep >= deadline),
            sleep=lambda seconds: self._sleep(seconds, ctx),
            before_sleep=lambda state: log.info(
                "step %d: LLM call failed (%s), retry %d in %.2fs", ctx.step,
                _kind(state.outcome.exception() if state.outcome else None),
                state.attempt_number, state.upcoming_sleep),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    self._check_time(ctx, deadline)
                    tally.attempts += 1
                    timeout = min(self.settings.request_timeout_seconds,
                                  deadline - self._clock())
                    answer = await self._watched(bound.ainvoke(messages, timeout=timeout),
                                                 deadline, ctx)
                    if not isinstance(answer, AIMessage):
                        raise StepAbandoned("error", "provider_error",
                                            f"unexpected answer {type(answer).__name__}")
                    return answer
        except openai.APIError as exc:
            raise _abandon(exc, tally.attempts) from exc
        raise AssertionError("tenacity ended without an answer or an error")

    async def _watched(self, call: Awaitable[T], deadline: float, ctx: StepContext) -> T:
        """Await `call`, cancelling it the moment a stop is requested or time is up."""
        began = time.perf_counter()
        task = asyncio.ensure_future(call)
        kind = "ok"
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._poll)
                if done:
                    return task.result()
                self._check_time(ctx, deadline)
        except openai.APIError as exc:
            kind = _kind(exc)
            raise
        except StepAbandoned as exc:
            kind = exc.error
            raise
        finally:
            telemetry.LLM_REQUESTS.labels(kind).inc()
            telemetry.LLM_REQUEST_LATENCY.observe(time.perf_counter() - began)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _backoff(self, state: RetryCallState) -> float:
        """Exponential with jitter, at least what a 429's Retry-After asks (capped)."""
        s = self.settings
        base = min(s.retry_max_seconds,
                   s.retry_initial_seconds * 2.0 ** (state.attempt_number - 1))
        wait: float = base / 2 + random.uniform(0, base / 2)
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after(exc)
        return min(s.retry_max_seconds, max(wait, asked)) if asked else wait

    async def _sleep(self, seconds: float, ctx: StepContext) -> None:
        end = self._clock() + seconds
        while (left := end - self._clock()) > 0:
            if ctx.stop_requested():
                raise StepAbandoned("timeout", "stopped", "stop requested during a retry wait")
            await asyncio.sleep(min(self._poll, left))

    # -- per-thread clients ------------------------------------------------------------
    def _client(self) -> _ThreadClient:
        client: _ThreadClient | None = getattr(self._local, "client", None)
        if client is None or client.loop.is_closed():
            client = self._new_client()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _new_client(self) -> _ThreadClient:
        s = self.settings
        loop = asyncio.new_event_loop()
        http = openai.DefaultAsyncHttpxClient(timeout=s.request_timeout_seconds)
        headers = {"X-Title": s.app_title} if s.provider is Provider.OPENROUTER else None
        options: dict[str, Any] = {}
        if self.params.temperature is not None:
            options["temperature"] = self.params.temperature
        if self.params.max_tokens is not None:
            options["max_tokens"] = self.params.max_tokens
        chat = ChatOpenAI(
            model=self.model_name, api_key=s.api_key, base_url=s.base_url,
            timeout=s.request_timeout_seconds, max_retries=0, http_async_client=http,
            default_headers=headers, use_responses_api=False, **options)
        return _ThreadClient(loop=loop, http=http, chat=chat)


def _check_well_formed(answer: AIMessage, tools: dict[str, BaseTool]) -> None:
    if answer.invalid_tool_calls:
        bad = answer.invalid_tool_calls[0]
        raise StepAbandoned("error", "malformed_tool_call",
                            f"tool call {bad.get('name')!r} does not parse: "
                            f"{_short(bad.get('args'))}")
    for call in answer.tool_calls:
        if call["name"] not in tools:
            raise StepAbandoned("error", "malformed_tool_call",
                                f"no tool named {call['name']!r}")


def _text_of(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content.strip()
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content
             if isinstance(p, str) or p.get("type") == "text"]
    return "".join(parts).strip()


def _kind(exc: BaseException | None) -> str:
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else "client_error"
    return "error"


def _abandon(exc: openai.APIError, attempts: int) -> StepAbandoned:
    kind = _kind(exc)
    tries = f"after {attempts} attempt(s)"
    if kind == "rate_limited":
        return StepAbandoned("error", "rate_limited", f"rate limited by the provider (429) {tries}")
    if kind == "timeout":
        return StepAbandoned("timeout", "timeout", f"the provider did not answer in time {tries}")
    if kind == "connection_error":
        return StepAbandoned("error", "connection_error",
                             f"cannot reach the provider {tries}: {_first_line(exc)}")
    status = getattr(exc, "status_code", None)
    return StepAbandoned("error", "provider_error",
                         f"provider error {status or ''} {tries}: {_first_line(exc)}")


def _retry_after(exc: BaseException | None) -> float:
    if not isinstance(exc, openai.APIStatusError):
        return 0.0
    headers = exc.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        return float(headers.get("retry-after") or 0)
    except ValueError:
        return 0.0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:200]
