"""The agent's tools, built per step as closures over that step's StepContext.

Every order goes through the context's broker, which is bound to one run and one step:
nothing here reads global or environment state, so two runs in one process cannot
reach each other's ledger. What the ledger refuses (a buy without the cash, a short
over the initial margin, a cancel of an order that is not open) is an answer for the
agent, not an error; so is an argument the tool checks before sending anything (an
unknown symbol or side, a quantity or price that is not positive), answered
`rejected` with the reason and never written to the ledger. Arguments that do not fit
a tool's schema at all (text for a number) are a malformed call: the decider's HOLD.
Every answer is a small JSON object the model reads: an order's id and state, a
trade's price, the reason of a refusal.
The calculator walks the expression's syntax tree (Decimal arithmetic, a short list of
functions, bounded powers): no eval.
"""

from __future__ import annotations

import ast
import decimal
import math
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated, Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, WithJsonSchema

from core import margin
from core.records import (
    Order,
    OrderOrigin,
    OrderRecord,
    OrderType,
    Refusal,
    Side,
    TimeInForce,
    Trade,
)
from runner.deciders.base import StepContext, number
from runner.deciders.blind import Blinding
from runner.deciders.research_tools import research_tools

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64
MAX_LISTED_ORDERS = 50  # open_orders() lists this many; it says how many more there are
# Bounds an argument must keep to reach the ledger (its NUMERIC(24, 6) columns hold under
# 10^18): past them the answer is a refusal, not a database error.
MAX_QUANTITY = 10**12
MAX_PRICE = 10**9
MAX_ID = 2**63 - 1

SIDES = [s.value for s in Side]
TIMES_IN_FORCE = [t.value for t in TimeInForce]

# Any text is taken where the schema shows the model a list of values: the tool checks
# it itself, so an unknown side is answered with a refusal, not a malformed call.
SideText = Annotated[str, WithJsonSchema({"type": "string", "enum": SIDES})]
TimeInForceText = Annotated[str, WithJsonSchema({"type": "string", "enum": TIMES_IN_FORCE})]


# Short descriptions: the rules (fills, margin, time in force) are in the system prompt
# once; every tool's schema goes with every model call.
_REASON = "Why, in one sentence"
_SYMBOL = "A symbol of this run, as the prompt names it"
_QUANTITY = "Number of shares (whole, positive)"
_STOP_LOSS = "Buy or short only: once it fills, a stop order at this price protects it"


class TradeArgs(BaseModel):
    symbol: str = Field(description=_SYMBOL)
    quantity: int = Field(description=_QUANTITY)
    reason: str | None = Field(default=None, description=_REASON)


class OpenArgs(TradeArgs):
    """buy and short: they open (or add to) a position, which a stop-loss may protect."""

    stop_loss: float | None = Field(default=None, description=_STOP_LOSS)


class LimitArgs(BaseModel):
    side: SideText
    symbol: str = Field(description=_SYMBOL)
    quantity: int = Field(description=_QUANTITY)
    limit_price: float
    time_in_force: TimeInForceText = "day"
    stop_loss: float | None = Field(default=None, description=_STOP_LOSS)
    reason: str | None = Field(default=None, description=_REASON)


class StopArgs(BaseModel):
    side: SideText
    symbol: str = Field(description=_SYMBOL)
    quantity: int = Field(description=_QUANTITY)
    stop_price: float
    limit_price: float | None = Field(default=None, description="Makes it a stop-limit")
    time_in_force: TimeInForceText = "day"
    stop_loss: float | None = Field(default=None, description=_STOP_LOSS)
    reason: str | None = Field(default=None, description=_REASON)


class CancelArgs(BaseModel):
    order_id: int
    reason: str | None = Field(default=None, description=_REASON)


class ReasonArgs(BaseModel):
    reason: str | None = Field(default=None, description=_REASON)


class HistoryArgs(BaseModel):
    symbol: str = Field(description=_SYMBOL)
    lookback: int = Field(description="How many bars, ending with the current one")


class NoArgs(BaseModel):
    pass


class CalculatorArgs(BaseModel):
    expression: str = Field(description="Arithmetic, e.g. (10000 - 250.5) / 187.25")


# -- calculator ------------------------------------------------------------------------
class CalculatorError(ValueError):
    pass


_BINARY: dict[type[ast.operator], Callable[[Decimal, Decimal], Decimal]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Decimal]] = {
    "abs": lambda x: abs(x), "min": lambda *xs: min(xs), "max": lambda *xs: max(xs),
    "round": lambda x, n=Decimal(0): round(x, int(n)), "sqrt": lambda x: x.sqrt(),
}


def calculate(expression: str) -> Decimal:
    """Evaluate +, -, *, /, //, %, ** (integer exponent up to 64), abs/min/max/round/sqrt."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc.msg}") from exc
    with decimal.localcontext(decimal.Context(prec=28, Emax=10**6, Emin=-10**6)):
        try:
            return _eval(tree.body)
        except (ArithmeticError, TypeError) as exc:
            raise CalculatorError(f"{type(exc).__name__}: {exc}") from exc


def _eval(node: ast.AST) -> Decimal:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Decimal(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if right != right.to_integral_value() or abs(right) > MAX_EXPONENT:
                raise CalculatorError(f"exponents must be whole numbers up to {MAX_EXPONENT}")
            return left ** int(right)
        op = _BINARY.get(type(node.op))
        if op is not None:
            return op(left, right)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords):
        return _FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args))
    raise CalculatorError(f"not allowed in an expression: {ast.unparse(node)[:40]!r}")


# -- answers -------------------------------------------------------------------------------
def trade_view(t: Trade) -> dict[str, Any]:
    """A market order's outcome: filled at a price, or refused with the reason."""
    return {"status": t.status.value, "order_id": t.order_id, "side": t.side.value,
            "symbol": t.symbol, "quantity": number(t.quantity), "price": number(t.price),
            "fees": number(t.fees), "cash_after": number(t.cash_after), "reason": t.reason}


def order_view(o: OrderRecord) -> dict[str, Any]:
    """An order as the model reads it (steps counted from 1, as the prompt does); keys
    without a value are left out."""
    view: dict[str, Any] = {
        "order_id": o.id, "status": o.state.value, "type": o.type.value,
        "side": o.side.value, "symbol": o.symbol, "quantity": number(o.quantity),
        "limit_price": _maybe(o.limit_price), "stop_price": _maybe(o.stop_price),
        "time_in_force": o.time_in_force.value, "stop_loss": _maybe(o.stop_loss),
        "placed_at_step": o.step + 1,
        "placed_by": None if o.origin is OrderOrigin.DECIDER else o.origin.value,
        "parent_id": o.parent_id,
        "triggered": True if o.triggered_at is not None else None,
        "fill_price": _maybe(o.fill_price), "reason": o.reason,
    }
    return {k: v for k, v in view.items() if v is not None}


def _maybe(value: Decimal | None) -> str | None:
    return None if value is None else number(value)


class Rejected(ValueError):
    """An argument the tool refuses before anything is sent: the answer says why."""


def _rejected(reason: str) -> dict[str, Any]:
    return {"status": "rejected", "reason": reason}


def _price(name: str, value: float | None) -> Decimal | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise Rejected(f"{name} must be a positive price, got {value:g}")
    if value > MAX_PRICE:
        raise Rejected(f"{name} must be at most {MAX_PRICE:,}, got {value:g}")
    return Decimal(str(value))


def _shares(quantity: int) -> Decimal:
    if quantity > MAX_QUANTITY:
        raise Rejected(f"quantity must be at most {MAX_QUANTITY:,} shares, got {quantity}")
    return Decimal(quantity)  # not positive: the order's own check says so


def _choice(name: str, value: str, known: Sequence[str]) -> str:
    chosen = value.strip().lower()
    if chosen not in known:
        raise Rejected(f"{name} must be one of {', '.join(known)}; got {value!r}")
    return chosen


# -- the tools of one step ---------------------------------------------------------------
def build_tools(ctx: StepContext, *, max_lookback: int,
                on_trade: Callable[[Trade], None],
                on_action: Callable[[str], None] = lambda action: None,
                blinding: Blinding | None = None) -> list[BaseTool]:
    """The run's tools for its current step: market orders (buy, sell, short, cover),
    resting orders (limit, stop, stop-limit), cancel_order, open_orders, close_all,
    portfolio, price_history and calculator; news and fundamentals where the run's data
    source serves them (runner.deciders.research_tools).

    `on_trade` hears of every trade the tools made (filled or refused); `on_action` of
    every other change to the ledger: a resting order placed (its side), a cancel
    ("cancel"), a close-all ("close_all")."""
    symbols = list(ctx.run.spec.symbols)
    broker = ctx.broker

    def known(symbol: str) -> str:
        if blinding is not None:  # a blind run's agent names its pseudonyms
            symbol = blinding.ticker(symbol)
        symbol = symbol.strip().upper()
        if symbol not in symbols:
            raise Rejected(f"{symbol!r} is not traded in this run; symbols: {symbols}")
        return symbol

    def send(order: Order, reason: str | None) -> dict[str, Any]:
        if (problem := order.problem()) is not None:
            raise Rejected(problem)
        done = broker.place(order, reason)
        if isinstance(done, OrderRecord):
            on_action(done.side.value)
            return order_view(done)
        on_trade(done)
        answer = trade_view(done)
        if done.filled and order.stop_loss is not None:
            stops = [o.id for o in broker.open_orders() if o.parent_id == done.order_id]
            if stops:
                answer["stop_loss_order_id"] = stops[0]
        return answer

    def market(side: Side, symbol: str, quantity: int, reason: str | None,
               stop_loss: float | None = None) -> dict[str, Any]:
        return send(Order(side, known(symbol), _shares(quantity),
                          stop_loss=_price("stop_loss", stop_loss)), reason)

    def buy(symbol: str, quantity: int, stop_loss: float | None = None,
            reason: str | None = None) -> dict[str, Any]:
        return market(Side.BUY, symbol, quantity, reason, stop_loss)

    def sell(symbol: str, quantity: int, reason: str | None = None) -> dict[str, Any]:
        return market(Side.SELL, symbol, quantity, reason)

    def short(symbol: str, quantity: int, stop_loss: float | None = None,
              reason: str | None = None) -> dict[str, Any]:
        return market(Side.SHORT, symbol, quantity, reason, stop_loss)

    def cover(symbol: str, quantity: int, reason: str | None = None) -> dict[str, Any]:
        return market(Side.COVER, symbol, quantity, reason)

    def resting(kind: OrderType, side: str, symbol: str, quantity: int, *,
                limit_price: float | None, stop_price: float | None, time_in_force: str,
                stop_loss: float | None, reason: str | None) -> dict[str, Any]:
        order = Order(Side(_choice("side", side, SIDES)), known(symbol), _shares(quantity),
                      kind, limit_price=_price("limit_price", limit_price),
                      stop_price=_price("stop_price", stop_price),
                      time_in_force=TimeInForce(_choice("time_in_force", time_in_force,
                                                        TIMES_IN_FORCE)),
                      stop_loss=_price("stop_loss", stop_loss))
        return send(order, reason)

    def place_limit_order(side: str, symbol: str, quantity: int, limit_price: float,
                          time_in_force: str = "day", stop_loss: float | None = None,
                          reason: str | None = None) -> dict[str, Any]:
        return resting(OrderType.LIMIT, side, symbol, quantity, limit_price=limit_price,
                       stop_price=None, time_in_force=time_in_force, stop_loss=stop_loss,
                       reason=reason)

    def place_stop_order(side: str, symbol: str, quantity: int, stop_price: float,
                         limit_price: float | None = None, time_in_force: str = "day",
                         stop_loss: float | None = None,
                         reason: str | None = None) -> dict[str, Any]:
        kind = OrderType.STOP if limit_price is None else OrderType.STOP_LIMIT
        return resting(kind, side, symbol, quantity, limit_price=limit_price,
                       stop_price=stop_price, time_in_force=time_in_force,
                       stop_loss=stop_loss, reason=reason)

    def cancel_order(order_id: int, reason: str | None = None) -> dict[str, Any]:
        if not 1 <= order_id <= MAX_ID:  # no such id: the same answer as an unknown one
            return {"status": "refused", "order_id": order_id,
                    "reason": f"no order {order_id} in this run"}
        done = broker.cancel(order_id, reason)
        if isinstance(done, Refusal):
            return {"status": "refused", "order_id": order_id, "reason": done.reason}
        on_action("cancel")
        return order_view(done)

    def open_orders() -> dict[str, Any]:
        book = broker.open_orders()
        answer: dict[str, Any] = {"open_orders": [order_view(o)
                                                  for o in book[:MAX_LISTED_ORDERS]]}
        if len(book) > MAX_LISTED_ORDERS:
            answer["not_listed"] = len(book) - MAX_LISTED_ORDERS
        return answer

    def close_all(reason: str | None = None) -> dict[str, Any]:
        cancelled = [o.id for o in broker.open_orders()]
        trades = broker.close_all(reason)
        for t in trades:
            on_trade(t)
        on_action("close_all")
        return {"status": "done", "cancelled_order_ids": cancelled,
                "trades": [trade_view(t) for t in trades]}

    def portfolio() -> dict[str, Any]:
        held = broker.portfolio()
        prices = {s: ctx.price(s) for s in symbols}
        answer = {"cash": str(held.cash),
                  "holdings": {s: str(q) for s, q in sorted(held.holdings.items())},
                  "last_close": {s: str(p) for s, p in prices.items()},
                  "equity": str(held.equity(prices))}
        shorts = margin.short_value(held, prices)
        if shorts:
            answer["short_value"] = str(shorts)
            answer["cash_free_for_buys"] = str(margin.free_cash(held, prices))
        return answer

    def price_history(symbol: str, lookback: int) -> dict[str, Any]:
        symbol = known(symbol)
        n = max(1, min(lookback, max_lookback))
        bars = ctx.history[symbol][-n:]  # the context holds bars up to this step only
        return {"symbol": symbol, "bars": [
            {"time": b.time.isoformat(), "open": str(b.open), "high": str(b.high),
             "low": str(b.low), "close": str(b.close), "volume": str(b.volume)}
            for b in bars]}

    def calculator(expression: str) -> dict[str, Any]:
        try:
            return {"expression": expression, "result": str(calculate(expression))}
        except CalculatorError as exc:
            return {"expression": expression, "error": str(exc)}

    def tool(fn: Callable[..., dict[str, Any]], schema: type[BaseModel],
             description: str) -> BaseTool:
        def answer(**kwargs: Any) -> dict[str, Any]:
            try:
                said = fn(**kwargs)
            except Rejected as exc:
                said = _rejected(str(exc))
            return said if blinding is None else dict(blinding.answer(said))
        return StructuredTool.from_function(func=answer, name=fn.__name__,
                                            args_schema=schema, description=description)

    # Research answers are dated by nature: a blind run has none.
    research = ([tool(fn, schema, text) for fn, schema, text
                 in research_tools(ctx, ctx.research, known)]
                if ctx.research is not None and blinding is None else [])
    now = "Market order at this step's fill price:"
    return [
        tool(buy, OpenArgs, f"{now} buy shares."),
        tool(sell, TradeArgs, f"{now} sell shares you hold long."),
        tool(short, OpenArgs, f"{now} sell shares short (holdings go negative)."),
        tool(cover, TradeArgs, f"{now} buy back shares you are short."),
        tool(place_limit_order, LimitArgs, "A limit order, open from the next bar on."),
        tool(place_stop_order, StopArgs,
             "A stop order (a stop-limit with limit_price), open from the next bar on."),
        tool(cancel_order, CancelArgs, "Cancel an open order."),
        tool(open_orders, NoArgs, "Your open orders."),
        tool(close_all, ReasonArgs, "Cancel every open order and close every position at "
                                    "this step's fill price."),
        tool(portfolio, NoArgs, "Your cash, holdings (negative: short), last closes and "
                                "equity right now."),
        tool(price_history, HistoryArgs,
             f"OHLCV bars of a symbol up to now (at most {max_lookback})."),
        tool(calculator, CalculatorArgs, "Evaluate an arithmetic expression exactly."),
        *research,  # last: the order tools' schemas stay first, as the prompt cache saw them
    ]
