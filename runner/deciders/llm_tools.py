"""The agent's tools, built per step as closures over that step's StepContext.

buy/sell trade through the context's broker, which is bound to one run and one step:
nothing here reads global or environment state, so two runs in one process cannot
reach each other's ledger. A refused trade is an answer for the agent, not an error;
arguments that do not fit a tool's schema are a malformed call (the decider's HOLD).
The calculator walks the expression's syntax tree (Decimal arithmetic, a short list of
functions, bounded powers): no eval.
"""

from __future__ import annotations

import ast
import decimal
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from core.records import Order, Side, Trade
from runner.deciders.base import StepContext

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64


class TradeArgs(BaseModel):
    symbol: str = Field(description="Ticker of this run, e.g. AAPL")
    quantity: int = Field(description="Number of shares (whole, positive)")
    reason: str | None = Field(default=None, description="Why, in one sentence")


class HistoryArgs(BaseModel):
    symbol: str = Field(description="Ticker of this run")
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


# -- the tools of one step ---------------------------------------------------------------
def build_tools(ctx: StepContext, *, max_lookback: int,
                on_trade: Callable[[Trade], None]) -> list[BaseTool]:
    """buy, sell, portfolio, price_history, calculator for this run's current step."""
    symbols = list(ctx.run.spec.symbols)

    def unknown(symbol: str) -> dict[str, Any] | None:
        if symbol in symbols:
            return None
        return {"status": "rejected",
                "reason": f"{symbol!r} is not traded in this run; symbols: {symbols}"}

    def trade(side: Side, symbol: str, quantity: int, reason: str | None) -> dict[str, Any]:
        symbol = symbol.strip().upper()
        if (rejected := unknown(symbol)) is not None:
            return rejected
        done = ctx.broker.submit(Order(side, symbol, Decimal(quantity)), reason)
        on_trade(done)
        return {"status": done.status.value, "side": done.side.value, "symbol": done.symbol,
                "quantity": str(done.quantity), "price": str(done.price),
                "fees": str(done.fees), "cash_after": str(done.cash_after),
                "reason": done.reason}

    def buy(symbol: str, quantity: int, reason: str | None = None) -> dict[str, Any]:
        return trade(Side.BUY, symbol, quantity, reason)

    def sell(symbol: str, quantity: int, reason: str | None = None) -> dict[str, Any]:
        return trade(Side.SELL, symbol, quantity, reason)

    def portfolio() -> dict[str, Any]:
        held = ctx.broker.portfolio()
        prices = {s: ctx.price(s) for s in symbols}
        return {"cash": str(held.cash),
                "holdings": {s: str(q) for s, q in sorted(held.holdings.items())},
                "last_close": {s: str(p) for s, p in prices.items()},
                "equity": str(held.equity(prices))}

    def price_history(symbol: str, lookback: int) -> dict[str, Any]:
        symbol = symbol.strip().upper()
        if (rejected := unknown(symbol)) is not None:
            return rejected
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
        return StructuredTool.from_function(func=fn, name=fn.__name__, args_schema=schema,
                                            description=description)

    return [
        tool(buy, TradeArgs, "Buy shares at this step's fill price. Refused when cash does "
                             "not cover quantity x price + fees."),
        tool(sell, TradeArgs, "Sell shares you hold at this step's fill price. Refused "
                              "when you hold fewer; no short selling."),
        tool(portfolio, NoArgs, "Your cash, holdings, last closes and equity right now."),
        tool(price_history, HistoryArgs,
             f"OHLCV bars of a symbol up to now (at most {max_lookback})."),
        tool(calculator, CalculatorArgs, "Evaluate an arithmetic expression exactly."),
    ]
