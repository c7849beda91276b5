"""The decider interface.

A decider sees one StepContext: bars up to and including the current step (never
later ones), the portfolio, its open orders and recent trades. It answers with orders
(and cancels, a close-all) for the session loop to execute, or (an agent with tools)
acts itself through the StepBroker, which is bound to this run and step only. A decider
acts one way or the other in a step: a replayed step executes the recorded answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, overload

from core.bars import Bar
from core.research.pit import bar_end

if TYPE_CHECKING:
    from runner.research import RunResearch
from core.records import Model, Order, OrderRecord, Portfolio, Refusal, Run, Trade


class StepBroker(Protocol):
    """Orders for the current step of one run. Each order (and each close-all) takes the
    next seq number(s); a refusal is an answer (a refused trade or order, a Refusal),
    never an exception."""

    def place(self, order: Order, reasoning: str | None = None) -> OrderRecord | Trade:
        """Any order: a market order's trade; a limit, stop or stop-limit order as it
        rests in the book (open from the next bar on), or refused when malformed."""

    def cancel(self, order_id: int, reasoning: str | None = None) -> OrderRecord | Refusal:
        """Cancel an open order: the order, cancelled; a Refusal for an order that is
        not open or not this run's."""

    def open_orders(self) -> list[OrderRecord]:
        """The run's open orders, oldest first."""

    def close_all(self, reasoning: str | None = None) -> list[Trade]:
        """Cancel every open order and flatten every position at this step's fill
        price; the trades (one per position)."""

    def portfolio(self) -> Portfolio: ...


def number(value: Decimal) -> str:
    """A quantity or price as plain text in any answer the agent reads: 10.000000 from
    the ledger reads 10."""
    text = format(value.normalize(), "f")
    return text if text not in ("-0", "") else "0"


@dataclass(frozen=True, slots=True)
class StepContext:
    run: Run
    model: Model
    step: int
    steps_total: int
    bar_time: dt.datetime
    history: dict[str, Sequence[Bar]]  # per symbol, bars[0..step] inclusive
    portfolio: Portfolio
    recent_trades: Sequence[Trade]
    broker: StepBroker
    stop_requested: Callable[[], bool] = lambda: False
    # Before each model call: the reason when the run's budget or its user's daily
    # limit leaves no room for what this step used so far (tokens, cost); else None.
    over_budget: Callable[[int, Decimal | None], str | None] = lambda tokens, cost: None
    # The run's open orders when the step's bar was settled (fills on it are done).
    open_orders: Sequence[OrderRecord] = ()
    # News, filings and corporate actions of the run's data source; None: it has none.
    research: RunResearch | None = None

    def price(self, symbol: str) -> Decimal:
        return self.history[symbol][-1].close

    @property
    def as_of(self) -> dt.datetime:
        """The end of the bar being decided on (UTC): no answer may know later."""
        return bar_end(self.run.spec.interval, self.bar_time)


class LazyTrades(Sequence[Trade]):
    """A step's recent trades, read from the store the first time a decider looks (the
    baselines never do: one query less per step)."""

    def __init__(self, load: Callable[[], list[Trade]]) -> None:
        self._load = load
        self._trades: list[Trade] | None = None

    def _get(self) -> list[Trade]:
        if self._trades is None:
            self._trades = self._load()
        return self._trades

    @overload
    def __getitem__(self, index: int) -> Trade: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Trade]: ...

    def __getitem__(self, index: int | slice) -> Trade | Sequence[Trade]:
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())


@dataclass(frozen=True, slots=True)
class DecisionResult:
    action: str  # buy, sell, hold (or a combination such as "buy,sell")
    orders: list[Order] = field(default_factory=list)
    reasoning: str | None = None
    outcome: str = "hold"  # trade, hold, timeout, error
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = None  # None: unknown (no price for the model), or nothing spent
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    traded_by_tools: int = 0  # trades the decider already made through the broker
    tokens_cached: int = 0  # of tokens_in, served from the provider's prompt cache
    # Executed before `orders`, in this order: cancel these open orders (ids), then
    # close everything (cancel every open order, flatten every position).
    cancels: list[int] = field(default_factory=list)
    close_all: bool = False

    @classmethod
    def hold(cls, reasoning: str, *, outcome: str = "hold", error: str | None = None
             ) -> DecisionResult:
        return cls(action="hold", reasoning=reasoning, outcome=outcome, error=error)


class DeciderFailed(Exception):
    """The decider cannot play this run and retrying cannot help (the provider refused
    the key, the model does not exist, the LLM settings are invalid). Not a HOLD: the
    session loop lets it through and the run fails at once with `reason`, which says
    what to fix and never holds a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Decider(Protocol):
    name: str
    # True when decide() may block for long (network): the loop then runs it in a
    # worker thread so a stop request can abandon it.
    blocking: bool

    def decide(self, ctx: StepContext) -> DecisionResult: ...
