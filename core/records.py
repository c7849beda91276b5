"""Records the store keeps: models, runs, trades, decisions, portfolios.

Plain frozen dataclasses: the store builds them from rows, the runner and the API read
them. Money and quantities are Decimal everywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.spec import RunSpec
from core.status import RunStatus


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"
    # Room for what DOMAIN.md lists as "later": short/cover and close-all.
    SHORT = "short"
    COVER = "cover"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TradeStatus(StrEnum):
    FILLED = "filled"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Model:
    id: int
    user_id: str
    signature: str
    llm: str | None
    custom_rules: str | None
    custom_instructions: str | None
    parameters: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    user_id: str
    model_id: int
    spec: RunSpec
    status: RunStatus
    status_reason: str | None
    steps_total: int
    steps_done: int
    created_at: dt.datetime
    admitted_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    stop_requested_at: dt.datetime | None
    result: dict[str, Any] | None
    idempotency_key: str | None = None
    attempts: int = 0
    decider: str | None = None  # as the runner resolved it
    # Why the runner played another decider than the model names (no LLM key, ...).
    decider_reason: str | None = None
    batch_id: int | None = None  # the batch that made it, if one did
    schedule_id: int | None = None  # the schedule that fired it, if one did


@dataclass(frozen=True, slots=True)
class Batch:
    """One request that made the runs of a matrix (models x symbols x dates or ranges)."""

    id: int
    user_id: str
    name: str | None
    template: dict[str, Any]  # the request as made (its matrix and common options)
    created_at: dt.datetime
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A run template fired by a cron rule (New York time, XNYS sessions only)."""

    id: int
    user_id: str
    model_id: int
    name: str | None
    cron: str
    template: dict[str, Any]  # the run's options, `session` and (daily) `sessions`
    make_up_seconds: int  # a fire missed by longer (the controller down) is not made up
    paused: bool
    created_at: dt.datetime
    fired_through: dt.datetime  # due times up to here are done


class FireOutcome(StrEnum):
    FIRED = "fired"  # it made its run
    MISSED = "missed"  # due while no controller led, and found past the make-up window
    FAILED = "failed"  # its run could not be made (the reason says why)


@dataclass(frozen=True, slots=True)
class ScheduleFire:
    """What came of one due time of a schedule; there is one per due time."""

    schedule_id: int
    due_at: dt.datetime
    outcome: FireOutcome
    run_id: int | None
    reason: str | None
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Order:
    """What a decider asks for; the TradingService turns it into a Trade."""

    side: Side
    symbol: str
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side.value,
            "symbol": self.symbol,
            "quantity": str(self.quantity),
            "type": self.type.value,
            "limit_price": None if self.limit_price is None else str(self.limit_price),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        limit = data.get("limit_price")
        return cls(
            side=Side(data["side"]),
            symbol=data["symbol"],
            quantity=Decimal(str(data["quantity"])),
            type=OrderType(data.get("type", "market")),
            limit_price=None if limit is None else Decimal(str(limit)),
        )


@dataclass(frozen=True, slots=True)
class Trade:
    id: int
    run_id: int
    step: int
    seq: int
    bar_time: dt.datetime  # the bar the order was decided on
    # The bar whose price it got (the next bar's open under next_open, the decision bar
    # under close); None for a refusal, which never filled.
    filled_at: dt.datetime | None
    side: Side
    symbol: str
    quantity: Decimal
    price: Decimal
    fees: Decimal
    status: TradeStatus
    reason: str | None
    cash_after: Decimal
    reasoning: str | None
    created_at: dt.datetime

    @property
    def filled(self) -> bool:
        return self.status is TradeStatus.FILLED


@dataclass(frozen=True, slots=True)
class Portfolio:
    run_id: int
    cash: Decimal
    holdings: dict[str, Decimal] = field(default_factory=dict)

    def held(self, symbol: str) -> Decimal:
        return self.holdings.get(symbol, Decimal(0))

    def equity(self, prices: dict[str, Decimal]) -> Decimal:
        value = sum((q * prices[s] for s, q in self.holdings.items() if q), Decimal(0))
        return self.cash + value


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """Written with every filled trade: the portfolio just after it."""

    run_id: int
    step: int
    seq: int
    bar_time: dt.datetime  # the decision bar of the trade
    filled_at: dt.datetime  # the position's time: when its trade filled
    action: Side
    symbol: str
    cash: Decimal
    holdings: dict[str, Decimal]
    reasoning: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    run_id: int
    step: int
    bar_time: dt.datetime
    action: str
    orders: list[Order]
    reasoning: str | None
    outcome: str
    latency_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    equity: Decimal | None = None
    cash: Decimal | None = None
    completed: bool = False
    tokens_cached: int = 0  # of tokens_in, served from the provider's prompt cache
    decided_at: dt.datetime | None = None  # set by the store when it records it
