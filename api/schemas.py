"""Request and response bodies of the /v1 API, with the examples OpenAPI shows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    model_validator,
)

from core.records import (
    Decision,
    Model,
    OrderEvent,
    OrderEventKind,
    OrderOrigin,
    OrderRecord,
    OrderState,
    OrderType,
    PositionRecord,
    Run,
    Side,
    TimeInForce,
    Trade,
)
from core.spec import JsonObject, Mode, RunSpec, Symbol
from core.status import RunStatus

INTRADAY_EXAMPLE: dict[str, Any] = {"model_id": 1, "mode": "intraday", "symbols": ["AAPL"],
                                    "date": "2025-06-02", "initial_cash": "100000",
                                    "decider": "sma_crossover"}
DAILY_EXAMPLE: dict[str, Any] = {"model_id": 1, "mode": "daily", "symbols": ["SPY"],
                                 "start": "2024-01-02", "end": "2024-06-28"}


def storable(value: Any) -> Any:
    """Refuse text a database cannot store (NUL, lone surrogates) anywhere in a body, as
    a 422 instead of a failed INSERT."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value


class StorableBody(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return storable(data)


def _text(value: Any) -> Any:
    # JSON carries a date as text; pydantic alone would also read a number as Unix time.
    if isinstance(value, int | float):
        raise ValueError("a date is a YYYY-MM-DD string")
    return value


JsonDate = Annotated[dt.date, BeforeValidator(_text)]


class RunCreateBase(RunSpec):
    """A run spec plus the model that trades it. The two modes below narrow it, so the
    OpenAPI document states which dates each takes; RunSpec's own checks still run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: int = Field(ge=1, le=2**63 - 1, strict=True,
                          description="One of the caller's models")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return storable(data)

    def spec(self) -> RunSpec:
        return RunSpec.model_validate(self.model_dump(exclude={"model_id"}))


class IntradayRunCreate(RunCreateBase):
    """One session, a decision per minute bar."""

    model_config = ConfigDict(json_schema_extra={"examples": [INTRADAY_EXAMPLE]})

    mode: Literal[Mode.INTRADAY]
    symbols: list[Symbol] = Field(min_length=1, max_length=10, description="Distinct tickers",
                                  json_schema_extra={"uniqueItems": True})
    date: JsonDate | None = Field(
        default=None, description="The trading date: an XNYS session, not in the future. "
                                  "A live run may leave it out: today's session until its "
                                  "close, else the next one (and it must be that one)")
    # null is accepted where a field of the other mode is absent, as it always was.
    start: None = Field(default=None, description="Daily runs only")
    end: None = Field(default=None, description="Daily runs only")


class DailyRunCreate(RunCreateBase):
    """A backtest over a range of dates, a decision per session."""

    model_config = ConfigDict(json_schema_extra={"examples": [DAILY_EXAMPLE]})

    mode: Literal[Mode.DAILY]
    date: None = Field(default=None, description="Intraday runs only")
    start: JsonDate = Field(description="First date (inclusive)")
    end: JsonDate = Field(description="Last date (inclusive), not before `start`, not in "
                                     "the future; the range must hold a session")


RunCreate = Annotated[IntradayRunCreate | DailyRunCreate, Discriminator("mode")]


class Progress(BaseModel):
    step: int = Field(description="Steps done")
    total: int
    equity: Decimal | None = None
    cash: Decimal | None = None
    last_action: str | None = None
    wall_time: dt.datetime | None = Field(
        default=None, description="A live run: when its last step was done")
    lag_seconds: float | None = Field(
        default=None, description="A live run: from its last bar's close to that step done")


class RunOut(BaseModel):
    id: int
    user_id: str
    model_id: int
    status: RunStatus
    status_reason: str | None
    spec: RunSpec
    progress: Progress
    created_at: dt.datetime
    admitted_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    stop_requested_at: dt.datetime | None
    attempts: int
    decider: str | None = Field(default=None, description="The decider that plays the run, "
                                "as the runner resolved it (null until a runner starts)")
    batch_id: int | None = Field(default=None, description="The batch that made it, if any")
    schedule_id: int | None = Field(default=None,
                                    description="The schedule that fired it, if any")
    decider_reason: str | None = Field(
        default=None, description="Why the run is not played by the LLM its model names "
                                  "(no LLM key in the runner, the spec asked for another "
                                  "decider, the model names none); null when it is")
    result: dict[str, Any] | None = Field(
        description="Final equity, return, drawdown, Sharpe, trades, win rate, benchmark; "
                    "orders (counted by state) and shorts; the decider (and "
                    "decider_reason); LLM usage: tokens_in, tokens_out, tokens_cached, cost "
                    "(of the decisions whose cost is known) and unknown_cost_decisions")

    @classmethod
    def of(cls, run: Run, live: dict[str, Any] | None = None) -> RunOut:
        live = live or {}
        step = max(int(live.get("step", 0) or 0), run.steps_done)
        final = run.result or {}  # a finished run's progress hash may have expired
        progress = Progress(step=step, total=run.steps_total,
                            equity=live.get("equity") or final.get("final_equity"),
                            cash=live.get("cash") or final.get("final_cash"),
                            last_action=live.get("last_action"),
                            wall_time=live.get("wall_time"), lag_seconds=live.get("lag_seconds"))
        return cls(id=run.id, user_id=run.user_id, model_id=run.model_id, status=run.status,
                   status_reason=run.status_reason, spec=run.spec, progress=progress,
                   created_at=run.created_at, admitted_at=run.admitted_at,
                   started_at=run.started_at, finished_at=run.finished_at,
                   stop_requested_at=run.stop_requested_at, attempts=run.attempts,
                   decider=run.decider, decider_reason=run.decider_reason, result=run.result,
                   batch_id=run.batch_id, schedule_id=run.schedule_id)


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class StopAllOut(BaseModel):
    stopping: list[int] = Field(description="Runs asked to stop")


class TradeOut(BaseModel):
    id: int
    step: int
    seq: int
    bar_time: dt.datetime = Field(description="The bar the order was decided on")
    filled_at: dt.datetime | None = Field(
        description="The bar whose price it got: the next bar's open under next_open, the "
                    "decision bar's close under close (and on a session's last bar); "
                    "null for a refused trade")
    side: str
    symbol: str
    quantity: Decimal
    price: Decimal
    fees: Decimal
    status: str = Field(description="filled or refused")
    reason: str | None = Field(description="Why a trade was refused")
    cash_after: Decimal
    reasoning: str | None
    order_id: int | None = Field(
        default=None, description="The order it fills (GET /v1/runs/{id}/orders/"
                                  "{order_id}); null for a trade from before orders")

    @classmethod
    def of(cls, t: Trade) -> TradeOut:
        return cls(id=t.id, step=t.step, seq=t.seq, bar_time=t.bar_time,
                   filled_at=t.filled_at, side=t.side.value, symbol=t.symbol,
                   quantity=t.quantity, price=t.price, fees=t.fees, status=t.status.value,
                   reason=t.reason, cash_after=t.cash_after, reasoning=t.reasoning,
                   order_id=t.order_id)


class OrderOut(BaseModel):
    """An order in a run's ledger: every order its decider made (market orders too,
    filled or refused at once) and those the engine placed (stop-losses, margin calls,
    flat at the close)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 12, "step": 3, "seq": 0, "bar_time": "2024-01-05T00:00:00Z", "active_from": 4,
        "side": "buy", "symbol": "MSFT", "quantity": "10", "type": "limit",
        "limit_price": "361.50", "stop_price": None, "time_in_force": "day",
        "stop_loss": "340", "origin": "decider", "parent_id": None, "state": "filled",
        "reason": None, "triggered_at": None, "filled_at": "2024-01-08T00:00:00Z",
        "fill_price": "361.50", "trade_id": 31, "reasoning": "Buy the dip",
        "created_at": "2025-06-02T14:00:00Z", "updated_at": "2025-06-02T14:00:01Z"}]})

    id: int
    step: int = Field(description="The step it was decided on")
    seq: int = Field(description="Its place among the orders of that step (with `step`, "
                                 "its key)")
    bar_time: dt.datetime = Field(description="The bar it was decided on")
    active_from: int = Field(description="The first step whose bar it may fill on")
    side: Side = Field(description="buy, sell, short (holdings go negative) or cover")
    symbol: str
    quantity: Decimal
    type: OrderType = Field(description="market fills at once (the run's fill rule); limit, "
                                        "stop and stop_limit rest until a bar fills them")
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce = Field(
        description="day: until its first bar's session ends; gtc: until filled, "
                    "cancelled or the run ends")
    stop_loss: Decimal | None = Field(description="A buy's (short's) protective stop price: "
                                                  "its fill places a stop order")
    origin: OrderOrigin = Field(description="Who placed it: the decider, or the engine "
                                            "(stop_loss, margin_call, flat_at_close)")
    parent_id: int | None = Field(description="A stop-loss: the order whose fill placed it")
    state: OrderState
    reason: str | None = Field(description="Why it was refused, cancelled or expired")
    triggered_at: dt.datetime | None = Field(
        description="A stop-limit: the bar its stop triggered on")
    filled_at: dt.datetime | None = Field(description="The bar it filled on")
    fill_price: Decimal | None
    trade_id: int | None = Field(description="Its trade (filled or refused), if it has one")
    reasoning: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, o: OrderRecord) -> OrderOut:
        return cls(id=o.id, step=o.step, seq=o.seq, bar_time=o.bar_time,
                   active_from=o.active_from, side=o.side, symbol=o.symbol,
                   quantity=o.quantity, type=o.type, limit_price=o.limit_price,
                   stop_price=o.stop_price, time_in_force=o.time_in_force,
                   stop_loss=o.stop_loss, origin=o.origin, parent_id=o.parent_id,
                   state=o.state, reason=o.reason, triggered_at=o.triggered_at,
                   filled_at=o.filled_at, fill_price=o.fill_price, trade_id=o.trade_id,
                   reasoning=o.reasoning, created_at=o.created_at, updated_at=o.updated_at)


class OrderEventOut(BaseModel):
    id: int
    step: int = Field(description="The step being played when it happened")
    kind: OrderEventKind = Field(description="placed, triggered (a stop-limit's stop), "
                                             "filled, cancelled, expired or refused")
    bar_time: dt.datetime | None = Field(description="The bar it happened on; null at the "
                                                     "run's end")
    price: Decimal | None = Field(description="A fill's (or a trigger's) price")
    reason: str | None
    created_at: dt.datetime | None

    @classmethod
    def of(cls, e: OrderEvent) -> OrderEventOut:
        return cls(id=e.id, step=e.step, kind=e.kind, bar_time=e.bar_time, price=e.price,
                   reason=e.reason, created_at=e.created_at)


class OrderDetailOut(OrderOut):
    """An order with its state changes."""

    events: list[OrderEventOut] = Field(description="Its state changes, oldest first")

    @classmethod
    def with_events(cls, o: OrderRecord, events: list[OrderEvent]) -> OrderDetailOut:
        return cls(**dict(OrderOut.of(o)), events=[OrderEventOut.of(e) for e in events])


class PositionOut(BaseModel):
    step: int
    seq: int
    bar_time: dt.datetime = Field(description="The bar its trade was decided on")
    filled_at: dt.datetime = Field(description="The position's time: when its trade filled")
    action: str
    symbol: str
    cash: Decimal
    holdings: dict[str, Decimal]

    @classmethod
    def of(cls, p: PositionRecord) -> PositionOut:
        return cls(step=p.step, seq=p.seq, bar_time=p.bar_time, filled_at=p.filled_at,
                   action=p.action.value, symbol=p.symbol, cash=p.cash, holdings=p.holdings)


class DecisionOut(BaseModel):
    step: int
    bar_time: dt.datetime
    action: str
    outcome: str = Field(description="trade, hold, timeout or error")
    orders: list[dict[str, Any]]
    reasoning: str | None
    latency_ms: float
    tokens_in: int = Field(description="Prompt tokens of the decision's model calls")
    tokens_out: int
    tokens_cached: int = Field(
        default=0, description="Of tokens_in, those the provider served from its prompt "
                               "cache (billed at the cached price)")
    cost: Decimal | None = Field(
        description="US dollars: what the provider reported (OpenRouter), else computed from "
                    "the price table (input, cached input, output); null when unknown (no "
                    "price for the model) or when no model was called")
    tool_calls: list[dict[str, Any]]
    error: str | None
    equity: Decimal | None
    cash: Decimal | None
    cancels: list[int] = Field(default_factory=list,
                               description="The open orders it cancelled (ids)")
    close_all: bool = Field(default=False, description="Whether it cancelled every open "
                                                       "order and closed every position")

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        return cls(step=d.step, bar_time=d.bar_time, action=d.action, outcome=d.outcome,
                   orders=[o.to_json() for o in d.orders], reasoning=d.reasoning,
                   latency_ms=d.latency_ms, tokens_in=d.tokens_in, tokens_out=d.tokens_out,
                   tokens_cached=d.tokens_cached, cost=d.cost, tool_calls=d.tool_calls,
                   error=d.error, equity=d.equity, cash=d.cash, cancels=list(d.cancels),
                   close_all=d.close_all)


class AuditedItemOut(BaseModel):
    step: int
    bar_time: dt.datetime
    as_of: dt.datetime = Field(description="The end of the bar decided on")
    tool: str
    kind: str = Field(description="items (news), filings or actions")
    label: str
    known_at: dt.datetime | None = Field(description="When the item became knowable; "
                                                     "null: undated (a violation)")
    seconds_before_as_of: float | None
    ok: bool


class OutsideCallOut(BaseModel):
    step: int
    tool: str
    server: str | None


class AuditOut(BaseModel):
    run_id: int
    lookahead: str = Field(description="clean, 'N items' (known after their bar's end) "
                                       "or possible (an outside tool not point-in-time)")
    dated_items: int
    violations: int
    outside_calls: int
    research_calls: int
    items: list[AuditedItemOut]
    outside: list[OutsideCallOut]


class ResultOut(BaseModel):
    run_id: int
    status: RunStatus
    status_reason: str | None
    result: dict[str, Any] | None = Field(description="None until the run ends")


Signature = Annotated[str, StringConstraints(min_length=1, max_length=100,
                                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\- ]*$")]
# No NUL: no database stores it (storable() refuses it in free-form JSON too).
LongText = Annotated[str, StringConstraints(max_length=20_000, pattern=r"^[^\x00]*$")]
LlmName = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                           pattern=r"^[A-Za-z0-9_.:/\-]+$")]


class ModelCreate(StorableBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "signature": "momentum-v1", "llm": "openai/gpt-4.1-mini",
        "custom_rules": "Never hold more than 50% of equity in one symbol.",
        "custom_instructions": "Trade the opening range breakout.",
        "parameters": {"max_tool_calls": 5}}]})

    signature: Signature = Field(description="Unique per user")
    llm: LlmName | None = Field(default=None, description="e.g. openai/gpt-4.1-mini")
    custom_rules: LongText | None = None
    custom_instructions: LongText | None = None
    parameters: JsonObject = Field(default_factory=dict, max_length=100)


class ModelUpdate(StorableBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"custom_instructions": "Hold through lunch."}]})

    signature: Signature | None = None
    llm: LlmName | None = None
    custom_rules: LongText | None = None
    custom_instructions: LongText | None = None
    parameters: JsonObject | None = Field(default=None, max_length=100)


class ModelOut(BaseModel):
    id: int
    signature: str
    llm: str | None
    custom_rules: str | None
    custom_instructions: str | None
    parameters: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, m: Model) -> ModelOut:
        return cls(id=m.id, signature=m.signature, llm=m.llm, custom_rules=m.custom_rules,
                   custom_instructions=m.custom_instructions, parameters=m.parameters,
                   created_at=m.created_at, updated_at=m.updated_at)


class ModelPage(BaseModel):
    items: list[ModelOut]
    next_cursor: str | None
