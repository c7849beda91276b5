"""The `llm` decider: a LangChain ChatOpenAI agent with tools bound to one run.

Per step: the system prompt (the run's rules), the step's context, and a bounded
tool-calling loop in which the order tools (buy, sell, short, cover, limit and stop
orders, cancel, close-all) act through the step's broker. Everything that
can go wrong with a provider (a deadline passed, a stop request, 429, 5xx, a dropped
connection, a tool call that does not parse) ends the step as a HOLD whose reason is
recorded and counted; transient failures are retried with backoff while the
decision's deadline allows.

The model is called through the async client on an event loop owned by the calling
thread (the session's decider thread), so a stop request or the deadline cancels the
HTTP request at once instead of waiting for a socket timeout: SIGTERM never waits on
a slow provider. Each thread gets its own loop, HTTP client and ChatOpenAI, and each
run its own decider: no state is shared between runs but the provider key's rate limit
(runner/llm_ratelimit.py, on purpose), and nothing reads identity from the environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
from runner.deciders.base import DeciderFailed, DecisionResult, StepContext
from runner.deciders.blind import Blinding
from runner.deciders.llm_prompt import step_message, system_prompt
from runner.deciders.llm_tools import build_tools
from runner.deciders.mcp_tools import McpServers, OutsideTools, outside_fields
from runner.llm_prices import ModelPrice, PriceTable, quantize_cost
from runner.llm_ratelimit import RateLimiter, local_limiter
from runner.llm_settings import LlmSettings, Provider
from runner.marketdata import timeline_for

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a provider's error message may quote back of a key (sk-..., sk-proj-****abcd).
_KEY_LIKE = re.compile(r"\b(?:sk|key|api)[-_][A-Za-z0-9_\-*.]{4,}", re.IGNORECASE)
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
    mcp_servers: McpServers = Field(default_factory=list,
                                    description="Outside tools: MCP servers (streamable HTTP)")


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

    # The model's price from the table: what an answer costs when the provider does
    # not say (OpenAI); None when the table has no price for it.
    price: ModelPrice | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # of tokens_in, served from the provider's prompt cache
    cost: Decimal | None = None  # of the answers whose cost is known
    unpriced: int = 0  # answers with neither a reported cost nor a price
    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    # What else the tools changed in the ledger: resting orders' sides, "cancel",
    # "close_all" (a step that only placed a limit order did not hold).
    actions: set[str] = field(default_factory=set)
    attempts: int = 0

    def add(self, message: AIMessage) -> None:
        tokens_in, tokens_cached, tokens_out = _usage_of(message)
        self.tokens_in += tokens_in
        self.tokens_cached += tokens_cached
        self.tokens_out += tokens_out
        cost = self._cost_of(message, tokens_in, tokens_cached, tokens_out)
        if cost is None:
            self.unpriced += 1
        else:
            self.cost = (self.cost or Decimal(0)) + cost
        if text := _text_of(message):
            self.texts.append(text)

    def _cost_of(self, message: AIMessage, tokens_in: int, tokens_cached: int,
                 tokens_out: int) -> Decimal | None:
        """What the provider reports (OpenRouter's usage.cost), else the table's price."""
        reported = (message.response_metadata.get("token_usage") or {}).get("cost")
        if reported is not None:
            return Decimal(str(reported))
        if self.price is None:
            return None
        return self.price.cost(tokens_in, tokens_cached, tokens_out)

    @property
    def known_cost(self) -> Decimal | None:
        """The decision's cost: None when any answer's cost is unknown (a part would read
        as the whole), or when nothing was answered."""
        if self.unpriced or self.cost is None:
            return None
        return quantize_cost(self.cost)

    def result(self, note: str | None = None, failure: StepAbandoned | None = None
               ) -> DecisionResult:
        sides = sorted({t.side.value for t in self.trades} | self.actions)
        reasoning = "\n".join(self.texts)
        if failure is not None:
            reasoning = f"HOLD: {failure.reason}" + (f"\n{reasoning}" if reasoning else "")
        elif note:
            reasoning = f"{reasoning}\n({note})" if reasoning else note
        if self.trades and failure is not None:
            reasoning += f"\n({len(self.trades)} trade(s) made through tools before that)"
        acted = self.trades or self.actions
        outcome = failure.outcome if failure else ("trade" if acted else "hold")
        return DecisionResult(
            action=",".join(sides) or "hold", reasoning=reasoning or "no reasoning given",
            outcome=outcome, tokens_in=self.tokens_in, tokens_out=self.tokens_out,
            tokens_cached=self.tokens_cached, cost=self.known_cost, tool_calls=self.tool_calls,
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
                 clock: Callable[[], float] = time.monotonic,
                 limiter: RateLimiter | None = None) -> None:
        if not model.llm:
            raise ValueError(f"model {model.signature!r} names no llm")
        if not settings.available or settings.api_key is None:
            raise ValueError("no LLM API key is configured")
        self.params = LlmParams.model_validate(model.parameters or {})
        self.settings = settings
        self.model_name = settings.model_name(model.llm)
        # The provider's sampling seed: a repeat of a batch cell (its own seed) is
        # reproducible where the model honours it (OpenAI; some OpenRouter models).
        self.seed = run.spec.seed
        limit = self.params.decision_timeout_seconds
        self.deadline_seconds = min(deadline_seconds, limit) if limit else deadline_seconds
        # The stable part of every request, sent first and byte-identical at every step,
        # so the provider's prompt cache can serve it (the step's context follows it).
        # A blind run hides its tickers and dates (runner.deciders.blind); outside tools'
        # answers could not be blinded, so it has none.
        self.blinding = (Blinding.of(run, timeline_for(run.spec).times[0])
                         if run.spec.blind else None)
        # Only the servers on hosts the operator allows (TICKRUN_LLM_MCP_ALLOWED_HOSTS).
        self._outside = OutsideTools(
            self.params.mcp_servers if self.blinding is None else [], run_id=run.id,
            allowed_hosts=settings.mcp_allowed_hosts)
        self.system = system_prompt(run, model, max_tool_calls=self.params.max_tool_calls,
                                    outside=self._outside.servers, blinding=self.blinding)
        self.price = PriceTable.load(settings.prices).price(self.model_name)
        self._poll = poll_seconds
        self._clock = clock
        # The key's limit, shared with every decider on it (default: this process's).
        self._limiter = limiter or local_limiter(settings)
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
        tally = _Tally(price=self.price)
        tools = {t.name: t for t in build_tools(ctx, max_lookback=self.params.max_lookback,
                                                 on_trade=tally.trades.append,
                                                 on_action=tally.actions.add,
                                                 blinding=self.blinding)}
        for tool in await self._outside.tools(ctx, time_left=lambda: deadline - self._clock()):
            tools.setdefault(tool.name, tool)  # tickrun's own names come first
        bound = chat.bind_tools(list(tools.values()))
        messages: list[BaseMessage] = [
            SystemMessage(self.system),
            HumanMessage(step_message(ctx, context_bars=self.params.context_bars,
                                      blinding=self.blinding))]
        budget = self.params.max_tool_calls
        try:
            for _ in range(budget + 1):
                if why := ctx.over_budget(tally.tokens_in + tally.tokens_out, tally.cost):
                    raise StepAbandoned("hold", "budget_exhausted", why)  # no call past it
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
                    messages.append(await self._run_tool(tools[call["name"]], call, tally))
            return self._done(ctx, tally, f"stopped at the limit of {budget} tool calls")
        except StepAbandoned as failure:
            telemetry.LLM_FAILURES.labels(failure.error).inc()
            log.warning("step %d: HOLD (%s): %s", ctx.step, failure.error, failure.reason)
            return self._done(ctx, tally, failure=failure)

    def _done(self, ctx: StepContext, tally: _Tally, note: str | None = None,
              failure: StepAbandoned | None = None) -> DecisionResult:
        telemetry.TOKENS.labels("input").inc(tally.tokens_in)
        telemetry.TOKENS.labels("output").inc(tally.tokens_out)
        telemetry.TOKENS.labels("cached").inc(tally.tokens_cached)
        if tally.cost:
            telemetry.LLM_COST.inc(float(tally.cost))
        result = tally.result(note, failure)
        log.debug("step %d: %s (%s), %d+%d tokens, %d tool call(s)", ctx.step, result.action,
                  result.outcome, tally.tokens_in, tally.tokens_out, len(tally.tool_calls))
        return result

    async def _run_tool(self, tool: BaseTool, call: ToolCall, tally: _Tally) -> ToolMessage:
        """tickrun's own tools run here, on this thread; async ones (outside tools: MCP)
        are awaited on this loop."""
        began = time.perf_counter()
        outside = outside_fields(tool)  # an outside tool's server and point_in_time
        try:
            if getattr(tool, "coroutine", None) is not None:
                output = await tool.ainvoke(call["args"])
            else:
                output = tool.invoke(call["args"])
        except (ValidationError, ToolException) as exc:
            raise StepAbandoned("error", "malformed_tool_call",
                                f"tool call {call['name']}({_short(call['args'])}) has bad "
                                f"arguments: {_first_line(exc)}") from exc
        # Outside tools' names are the model's: one label for them all.
        telemetry.LLM_TOOL_CALLS.labels("mcp" if outside else tool.name).inc()
        tally.tool_calls.append({"name": tool.name, "args": call["args"], "result": output,
                                 "ms": round((time.perf_counter() - began) * 1000, 3),
                                 **outside})
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
                    await self._await_slot(bound, messages, deadline, ctx)
                    tally.attempts += 1
                    timeout = min(self.settings.request_timeout_seconds,
                                  deadline - self._clock())
                    answer = await self._heard(self._watched(
                        bound.ainvoke(messages, timeout=timeout), deadline, ctx))
                    if not isinstance(answer, AIMessage):
                        raise StepAbandoned("error", "provider_error",
                                            f"unexpected answer {type(answer).__name__}")
                    return answer
        except openai.APIError as exc:
            raise self._failure(exc, tally.attempts) from exc
        raise AssertionError("tenacity ended without an answer or an error")

    def _failure(self, exc: openai.APIError, attempts: int) -> StepAbandoned | DeciderFailed:
        """A refused key, an account without credit or an unknown model fails the run at
        once: every later step would be refused the same way. Anything else is this
        step's HOLD."""
        status = getattr(exc, "status_code", None)
        where = _where(self.settings.base_url)
        if status == 401:
            return DeciderFailed(
                f"the LLM provider at {where} refused the key (401): check "
                "TICKRUN_LLM_API_KEY (or OPENAI_API_KEY / OPENROUTER_API_KEY)")
        if status == 402 or _kind(exc) == "no_credit":
            return DeciderFailed(
                f"the LLM account at {where} has no credit left ({status}): add credit or "
                f"use another key{self._provider_says(exc)}")
        if status not in (403, 404):
            return _abandon(exc, attempts)
        said = self._provider_says(exc)
        if status == 403:
            return DeciderFailed(f"the LLM provider at {where} denied access to model "
                                 f"{self.model_name!r} (403){said}")
        return DeciderFailed(f"unknown model {self.model_name!r} at {where} (404): check the "
                             f"model's llm and TICKRUN_LLM_BASE_URL{said}")

    def _provider_says(self, exc: openai.APIError) -> str:
        """The provider's own message, with anything that looks like a key blanked out
        (some quote a masked key back)."""
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return ""
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if key:
            message = message.replace(key, "***")
        message = _KEY_LIKE.sub("***", message)
        return f"; the provider says: {message.strip().splitlines()[0][:200]}"

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

    # -- the key's shared rate limit ---------------------------------------------------
    async def _await_slot(self, bound: Runnable[LanguageModelInput, BaseMessage],
                          messages: Sequence[BaseMessage], deadline: float,
                          ctx: StepContext) -> None:
        """Wait for this request's slot under the key's limit (first come, first served
        across runs), or end the step as a HOLD if the slot comes after the deadline."""
        tokens = self._estimated_tokens(bound, messages)
        began = self._clock()
        while True:
            left = deadline - self._clock() - self._poll  # a request needs some time
            slot = self._limiter.reserve(tokens, max_wait=max(0.0, left))
            if not slot.granted and slot.wait > left:
                raise StepAbandoned(
                    "error", "rate_limited",
                    f"waiting {slot.wait:.1f}s for the shared rate limit of the provider "
                    f"key would pass the decision's deadline ({self.deadline_seconds:g}s)")
            await self._sleep(slot.wait, ctx)
            # A slot that came up during a pause (a 429 meanwhile) is asked for again.
            if slot.granted and (slot.wait == 0 or self._limiter.paused_for() <= 0):
                break
        telemetry.LLM_RATE_LIMIT_WAIT.observe(self._clock() - began)

    async def _heard(self, call: Awaitable[T]) -> T:
        """Await the request and tell the limiter what the provider's headers said."""
        try:
            answer = await call
        except openai.APIStatusError as exc:
            self._limiter.observe(exc.response.headers, exc.status_code)
            raise
        except BaseException:
            self._limiter.observe(None)  # no answer: it only ends a probe
            raise
        metadata = getattr(answer, "response_metadata", None) or {}
        self._limiter.observe(metadata.get("headers") or {})
        return answer

    def _estimated_tokens(self, bound: Runnable[LanguageModelInput, BaseMessage],
                          messages: Sequence[BaseMessage]) -> int:
        """What the provider counts against tokens per minute before answering (OpenAI:
        about four characters a token of the tools and messages, plus max_tokens)."""
        tools = (getattr(bound, "kwargs", None) or {}).get("tools") or []
        chars = len(json.dumps(tools, default=str)) + sum(
            len(str(m.content)) + len(str(getattr(m, "tool_calls", "") or ""))
            for m in messages)
        return chars // 4 + (self.params.max_tokens or 0)

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
        options: dict[str, Any] = {"seed": self.seed}
        if self.params.temperature is not None:
            options["temperature"] = self.params.temperature
        if self.params.max_tokens is not None:
            options["max_tokens"] = self.params.max_tokens
        chat = ChatOpenAI(
            model=self.model_name, api_key=s.api_key, base_url=s.base_url,
            timeout=s.request_timeout_seconds, max_retries=0, http_async_client=http,
            default_headers=headers, use_responses_api=False,
            include_response_headers=True,  # x-ratelimit-* for the shared limit
            **options)
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
        # OpenAI answers an account without credit with a 429 too: waiting cannot help.
        return "no_credit" if _no_credit(exc) else "rate_limited"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else "client_error"
    return "error"


def _no_credit(exc: openai.APIError) -> bool:
    return "insufficient_quota" in (getattr(exc, "code", None), getattr(exc, "type", None))


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


def _usage_of(message: AIMessage) -> tuple[int, int, int]:
    """Prompt, cached prompt and completion tokens of one answer. LangChain reads OpenAI's
    prompt_tokens_details.cached_tokens into input_token_details.cache_read (with a
    service tier's prefix on priority or flex answers)."""
    usage = message.usage_metadata
    if usage is None:
        return 0, 0, 0
    details: dict[str, Any] = dict(usage.get("input_token_details") or {})
    cached = sum(int(v or 0) for k, v in details.items() if k.endswith("cache_read"))
    return int(usage.get("input_tokens", 0)), cached, int(usage.get("output_tokens", 0))


def _where(url: str | None) -> str:
    """The provider's URL for a message: no credentials, no query."""
    if not url:
        return "the provider"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


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
