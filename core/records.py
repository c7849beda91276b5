"""Records the store keeps: models, runs, orders, trades, decisions, portfolios.

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
    BUY = "buy"  # open or add to a long
    SELL = "sell"  # reduce or close a long
    SHORT = "short"  # open or add to a short (holdings go negative)
    COVER = "cover"  # buy a short back

    @property
    def buys(self) -> bool:
        """Buy and cover pay cash; sell and short receive it."""
        return self in (Side.BUY, Side.COVER)


class OrderType(StrEnum):
    MARKET = "market"  # fills at once, at the run's fill rule (next open or close)
    LIMIT = "limit"  # rests until a bar trades at the limit price or better
    STOP = "stop"  # rests until a bar trades at the stop price, then fills as a market
    STOP_LIMIT = "stop_limit"  # a stop that becomes a limit order when triggered

    @property
    def rests(self) -> bool:
        return self is not OrderType.MARKET


class TimeInForce(StrEnum):
    # Until the end of the session of the first bar it may fill on: in a daily backtest
    # that is the one next session; intraday, the run's session.
    DAY = "day"
    GTC = "gtc"  # until filled, cancelled, or the run ends


class OrderState(StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"  # refused when placed (malformed) or when it came to fill

    @property
    def is_final(self) -> bool:
        return self is not OrderState.OPEN


class OrderOrigin(StrEnum):
    """Who placed an order: the decider, or the engine on a rule of the run."""

    DECIDER = "decider"  # its orders, its tools and its close-all
    STOP_LOSS = "stop_loss"  # the stop placed when a buy (short) with a stop_loss fills
    MARGIN_CALL = "margin_call"  # shorts covered at a close under the maintenance margin
    FLAT_AT_CLOSE = "flat_at_close"  # an intraday run's positions closed on its last bar


class OrderEventKind(StrEnum):
    PLACED = "placed"
    TRIGGERED = "triggered"  # a stop-limit's stop was hit: from now on a limit order
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"


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
    """What a decider asks for. A market order fills at once (the run's fill rule); the
    others rest in the run's order book until a later bar fills them (core.orders), they
    are cancelled, or they expire. `stop_loss` (on a buy or a short): when it fills, a
    stop order for the filled quantity on the other side is placed at that price."""

    side: Side
    symbol: str
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    stop_loss: Decimal | None = None

    def problem(self) -> str | None:
        """Why the order cannot be placed as written (its shape, not the portfolio);
        None when it can."""
        if self.quantity <= 0:
            return f"quantity must be positive, got {self.quantity}"
        needs_limit = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.type in (OrderType.STOP, OrderType.STOP_LIMIT)
        for name, price, needed in (("limit_price", self.limit_price, needs_limit),
                                    ("stop_price", self.stop_price, needs_stop)):
            if needed and price is None:
                return f"a {self.type.value} order needs a {name}"
            if not needed and price is not None:
                return f"a {self.type.value} order takes no {name}"
            if price is not None and price <= 0:
                return f"{name} must be positive, got {price}"
        if self.stop_loss is not None:
            if self.side not in (Side.BUY, Side.SHORT):
                return "a stop_loss goes with a buy or a short only"
            if self.stop_loss <= 0:
                return f"stop_loss must be positive, got {self.stop_loss}"
        return None

    @classmethod
    def closing(cls, symbol: str, held: Decimal) -> Order:
        """The market order that closes a position of `held` shares (negative: short)."""
        return cls(Side.SELL if held > 0 else Side.COVER, symbol, abs(held))

    def to_json(self) -> dict[str, Any]:
        # The keys an order always had, then the newer ones only when set: the JSON of
        # a market order is what it was before orders could rest.
        data: dict[str, Any] = {
            "side": self.side.value,
            "symbol": self.symbol,
            "quantity": str(self.quantity),
            "type": self.type.value,
            "limit_price": _text(self.limit_price),
        }
        if self.stop_price is not None:
            data["stop_price"] = str(self.stop_price)
        if self.time_in_force is not TimeInForce.DAY:
            data["time_in_force"] = self.time_in_force.value
        if self.stop_loss is not None:
            data["stop_loss"] = str(self.stop_loss)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        """Reads every version: decisions recorded before orders could rest have only
        side, symbol, quantity, type and limit_price."""
        return cls(
            side=Side(data["side"]),
            symbol=data["symbol"],
            quantity=Decimal(str(data["quantity"])),
            type=OrderType(data.get("type") or "market"),
            limit_price=_decimal(data.get("limit_price")),
            stop_price=_decimal(data.get("stop_price")),
            time_in_force=TimeInForce(data.get("time_in_force") or "day"),
            stop_loss=_decimal(data.get("stop_loss")),
        )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order in the run's ledger: every order a decider made (market ones too, filled
    or refused at once) and those the engine placed. Keyed by (run, step, seq) like
    trades: a replayed step finds the order it placed before instead of placing it
    again. Its fill is the trade whose order_id is its id."""

    id: int
    run_id: int
    step: int  # the step it was decided on
    seq: int
    bar_time: dt.datetime  # the bar it was decided on
    # The first step whose bar it may fill on: the step after its decision (never a bar
    # the decider could not see yet); for a stop-loss, the bar its parent filled on
    # unless that fill was at the bar's close.
    active_from: int
    side: Side
    symbol: str
    quantity: Decimal
    type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    stop_loss: Decimal | None
    origin: OrderOrigin
    parent_id: int | None  # a stop-loss: the order whose fill placed it
    state: OrderState
    reason: str | None  # why it was refused, cancelled or expired
    triggered_at: dt.datetime | None  # a stop-limit: the bar its stop was hit on
    filled_at: dt.datetime | None  # the bar it filled on
    fill_price: Decimal | None
    reasoning: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    trade_id: int | None = None  # its trade (filled or refused), when it has one

    @property
    def is_open(self) -> bool:
        return self.state is OrderState.OPEN

    def order(self) -> Order:
        return Order(side=self.side, symbol=self.symbol, quantity=self.quantity,
                     type=self.type, limit_price=self.limit_price,
                     stop_price=self.stop_price, time_in_force=self.time_in_force,
                     stop_loss=self.stop_loss)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "step": self.step, "seq": self.seq,
            "bar_time": self.bar_time.isoformat(), "active_from": self.active_from,
            "side": self.side.value, "symbol": self.symbol, "quantity": str(self.quantity),
            "type": self.type.value, "limit_price": _text(self.limit_price),
            "stop_price": _text(self.stop_price),
            "time_in_force": self.time_in_force.value, "stop_loss": _text(self.stop_loss),
            "origin": self.origin.value, "parent_id": self.parent_id,
            "state": self.state.value, "reason": self.reason,
            "triggered_at": None if self.triggered_at is None else self.triggered_at.isoformat(),
            "filled_at": None if self.filled_at is None else self.filled_at.isoformat(),
            "fill_price": _text(self.fill_price), "trade_id": self.trade_id,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer that changed nothing, and why: a cancel of an order that is not open
    (or not the run's). The decider sees it; it is not an error."""

    reason: str


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One state change of an order, as the ledger keeps it (written in the same
    transaction as the change, its trade and its portfolio). id, run_id and created_at
    are the store's: 0 and None on one not stored yet."""

    order_id: int
    step: int  # the step being played when it happened
    kind: OrderEventKind
    bar_time: dt.datetime | None  # the bar it happened on; None: at a run's end
    price: Decimal | None = None  # a fill's price
    reason: str | None = None
    id: int = 0
    run_id: int = 0
    created_at: dt.datetime | None = None


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
    order_id: int | None = None  # the order it fills (None: a trade from before orders)
    # A broker's fill (a live run on Alpaca paper): the price tickrun's fill rule would
    # have given; `price` is the broker's. None: tickrun's own book filled it.
    rule_price: Decimal | None = None

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
    # What the decision did besides `orders` (a replayed step does it again): the ids of
    # the orders it cancelled, and whether it closed everything (before its orders).
    cancels: list[int] = field(default_factory=list)
    close_all: bool = False
