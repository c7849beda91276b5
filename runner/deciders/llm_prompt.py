"""What the agent is told: the run's rules once (system), then the context of each step.

The system prompt carries the mode, symbols, fill rule, fees, what is refused, and the
model's own custom_rules and custom_instructions. The step message shows bars up to
and including this step only (the context never holds later ones), the portfolio,
and the recent trades with their refusals, so the agent learns from what was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.records import Model, Run, Trade
from core.spec import FillRule, Mode
from runner.deciders.base import StepContext
from runner.marketdata import Bar


def system_prompt(run: Run, model: Model, *, max_tool_calls: int) -> str:
    spec = run.spec
    symbols = ", ".join(spec.symbols)
    if spec.mode is Mode.INTRADAY:
        cadence = (f"Intraday session on {spec.date}: one decision per one-minute bar of the "
                   f"regular US session (09:30-16:00 America/New_York), {run.steps_total} "
                   "steps.")
    else:
        cadence = (f"Daily backtest from {spec.start} to {spec.end}: one decision per trading "
                   f"day on daily OHLCV bars, {run.steps_total} steps.")
    fill = ("Orders fill at the next bar's open (the last step fills at its close)."
            if spec.fill is FillRule.NEXT_OPEN else "Orders fill at this bar's close.")
    lines = [
        f"You are {model.signature}, a trading agent. You trade {symbols} for one account.",
        cadence,
        "Rules:",
        f"- {fill} Fee per filled trade: {spec.fee_per_trade}.",
        "- A buy is refused when cash < quantity x price + fees; a sell is refused when you "
        "hold fewer shares. No short selling, no margin, whole shares only.",
        "- A refused trade changes nothing; its reason comes back as the tool's answer.",
        "- You see bars up to the current one only.",
        "Tools: buy(symbol, quantity), sell(symbol, quantity), portfolio(), "
        f"price_history(symbol, lookback), calculator(expression). At most {max_tool_calls} "
        "tool calls per step.",
        "Each step: trade with the tools or do nothing (hold), then answer with one or two "
        "sentences of reasoning.",
    ]
    if model.custom_rules:
        lines += ["", "Rules set by the account owner:", model.custom_rules.strip()]
    if model.custom_instructions:
        lines += ["", "Instructions from the account owner:", model.custom_instructions.strip()]
    return "\n".join(lines)


def step_message(ctx: StepContext, *, context_bars: int) -> str:
    when = ctx.bar_time.isoformat()
    lines = [f"Step {ctx.step + 1} of {ctx.steps_total}, bar time {when}."]
    for symbol, bars in ctx.history.items():
        lines.append(f"{symbol}, last {min(context_bars, len(bars))} bars "
                     "(time open high low close volume):")
        lines += [_bar(b) for b in bars[-context_bars:]]
    p = ctx.portfolio
    held = ", ".join(f"{s} {q}" for s, q in sorted(p.holdings.items())) or "none"
    prices = {s: ctx.price(s) for s in ctx.history}
    lines.append(f"Portfolio: cash {p.cash}, holdings {held}, equity {p.equity(prices)}.")
    lines.append(_trades(ctx.recent_trades))
    return "\n".join(lines)


def _bar(b: Bar) -> str:
    return f"{b.time.isoformat()} {b.open} {b.high} {b.low} {b.close} {b.volume}"


def _trades(trades: Sequence[Trade]) -> str:
    if not trades:
        return "Recent trades: none."
    rows = [f"- step {t.step + 1}: {t.side.value} {t.quantity} {t.symbol} @ {t.price}: "
            + _outcome(t) for t in trades]
    return "\n".join(["Recent trades (oldest first):", *rows])


def _outcome(t: Trade) -> str:
    # The fill time says which bar the price is from (the next bar's open, by default).
    if not t.filled:
        return f"REFUSED ({t.reason})"
    return "filled" if t.filled_at is None else f"filled at {t.filled_at.isoformat()}"
