"""What the agent is told: the run's rules once (system), then the context of each step.

The system prompt carries the mode, symbols, fill rule, fees, the order types and how
they fill (core.orders), the margin of shorts (core.margin), what is refused, and the
model's own custom_rules and custom_instructions, and one line per outside (MCP) server
naming its tools and whether they answer as of the bar's end. The step message shows
bars up to and including this step only (the context never holds later ones), the
portfolio, the open orders, and the recent trades with their refusals, so the agent
learns from what was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from core import margin
from core.bars import Bar
from core.records import Model, OrderOrigin, OrderRecord, Run, Trade
from core.spec import FillRule, Mode
from runner.deciders.base import StepContext, number
from runner.deciders.blind import Blinding
from runner.deciders.mcp_tools import SEPARATOR, McpServer


def system_prompt(run: Run, model: Model, *, max_tool_calls: int,
                  outside: Sequence[McpServer] = (), blinding: Blinding | None = None) -> str:
    """The run's rules; for a blind run, with pseudonyms for its symbols and no calendar
    date anywhere (runner.deciders.blind)."""
    prompt = _system_prompt(run, model, max_tool_calls=max_tool_calls, outside=outside,
                            blind=blinding is not None)
    return prompt if blinding is None else blinding.text(prompt)


def _system_prompt(run: Run, model: Model, *, max_tool_calls: int,
                   outside: Sequence[McpServer], blind: bool) -> str:
    spec = run.spec
    symbols = ", ".join(spec.symbols)
    if blind:
        cadence = (f"A {'regular US session' if spec.mode is Mode.INTRADAY else 'daily backtest'}"
                   f" whose symbols and dates are hidden: {run.steps_total} steps, one "
                   f"decision per {'one-minute' if spec.mode is Mode.INTRADAY else 'daily'} "
                   "bar; times are counted from the first bar (minute +N or day +N).")
    elif spec.mode is Mode.INTRADAY:
        cadence = (f"Intraday session on {spec.date}: one decision per one-minute bar of the "
                   f"regular US session (09:30-16:00 America/New_York), {run.steps_total} "
                   "steps.")
    else:
        cadence = (f"Daily backtest from {spec.start} to {spec.end}: one decision per trading "
                   f"day on daily OHLCV bars, {run.steps_total} steps.")
    fill = ("Orders fill at the next bar's open (the last step fills at its close)."
            if spec.fill is FillRule.NEXT_OPEN else "Orders fill at this bar's close.")
    day = ("that one bar" if spec.mode is Mode.DAILY else "the rest of the session")
    lines = [
        f"You are {model.signature}, a trading agent. You trade {symbols} for one account.",
        cadence,
        "Rules:",
        f"- Market orders (buy, sell, short, cover): {fill} Fee per filled trade: "
        f"{spec.fee_per_trade}. Whole shares only.",
        "- A buy is refused when the cash not held against shorts (cash - value of your "
        "shorts) < quantity x price + fees, or when the symbol is held short; a sell when "
        "you hold fewer shares; a cover when you are short fewer.",
        "- Short selling: short sells borrowed shares (holdings go negative, cash grows by "
        "the proceeds); not while the symbol is held long. A short is refused when equity "
        f"after it would be under {spec.initial_margin} x the value of your shorts (initial "
        f"margin). At any bar's close with equity under {spec.maintenance_margin} x that "
        "value, every short is covered at that close (a margin call).",
        "- Limit and stop orders rest from the next bar on and are checked against each "
        "bar's range, oldest first. Limit L: a buy or cover fills when low <= L, at "
        "min(open, L); a sell or short when high >= L, at max(open, L). Stop S: a buy or "
        "cover fills when high >= S, at max(open, S); a sell or short when low <= S, at "
        "min(open, S) (a gap fills at the open). Stop-limit (S, L): once its stop "
        "triggers, a limit order at L (on the bar its stop triggers within, it fills only "
        "if L is beyond S, at S). Cash, holdings and margin are checked when an order "
        "fills: a fill they do not allow is refused.",
        f"- time_in_force day: the order lives until its first bar's session ends ({day}); "
        "gtc: until filled, cancelled or the run ends. Open orders end with the run.",
        "- stop_loss on a buy or a short: once it fills, a GTC stop order for its quantity "
        "closes the position at that price (cancel_order cancels it).",
        *(["- Flat at the close: after the last bar's decision, every open order is "
           "cancelled and every position closed at that bar's close."]
          if spec.flat_at_close else []),
        "- A refused order, trade or cancel changes nothing; its reason comes back as the "
        "tool's answer.",
        "- You see bars up to the current one only.",
        "Tools: buy(symbol, quantity, stop_loss?), sell(symbol, quantity), "
        "short(symbol, quantity, stop_loss?), cover(symbol, quantity), "
        "place_limit_order(side, symbol, quantity, limit_price, time_in_force?, "
        "stop_loss?), place_stop_order(side, symbol, quantity, stop_price, limit_price?, "
        "time_in_force?, stop_loss?), cancel_order(order_id), open_orders(), close_all(), "
        "portfolio(), price_history(symbol, lookback), calculator(expression). At most "
        f"{max_tool_calls} tool calls per step.",
        *_outside(outside),
        "Each step: act with the tools or do nothing (hold), then answer with one or two "
        "sentences of reasoning.",
    ]
    if model.custom_rules:
        lines += ["", "Rules set by the account owner:", model.custom_rules.strip()]
    if model.custom_instructions:
        lines += ["", "Instructions from the account owner:", model.custom_instructions.strip()]
    return "\n".join(lines)


def _outside(servers: Sequence[McpServer]) -> list[str]:
    """One line per outside server: its tools' names, and whether they can look ahead."""
    if not servers:
        return []
    lines = ["Outside tools (from other servers; they count toward that limit):"]
    for s in servers:
        tools = f"- {s.name}{SEPARATOR}<tool>: outside tools of server {s.name}"
        lines.append(
            f"{tools}, point-in-time: they answer with what was known at the current bar's "
            "end." if s.point_in_time else
            f"{tools}, NOT point-in-time: an answer may hold what became known after the "
            "current bar, which you could not have known then; do not trade on that.")
    return lines


def step_message(ctx: StepContext, *, context_bars: int,
                 blinding: Blinding | None = None) -> str:
    """The step's context; for a blind run, every ticker and time in it blinded."""
    message = _step_message(ctx, context_bars=context_bars)
    return message if blinding is None else blinding.text(message)


def _step_message(ctx: StepContext, *, context_bars: int) -> str:
    when = ctx.bar_time.isoformat()
    lines = [f"Step {ctx.step + 1} of {ctx.steps_total}, bar time {when}."]
    for symbol, bars in ctx.history.items():
        lines.append(f"{symbol}, last {min(context_bars, len(bars))} bars "
                     "(time open high low close volume):")
        lines += [_bar(b) for b in bars[-context_bars:]]
    p = ctx.portfolio
    held = ", ".join(f"{s} {q}" for s, q in sorted(p.holdings.items())) or "none"
    prices = {s: ctx.price(s) for s in ctx.history}
    shorts = margin.short_value(p, prices)
    held_back = (f", short value {shorts}, cash free for buys {p.cash - shorts}"
                 if shorts else "")
    lines.append(f"Portfolio: cash {p.cash}, holdings {held}, equity {p.equity(prices)}"
                 f"{held_back}.")
    lines.append(_orders(ctx.open_orders))
    lines.append(_trades(ctx.recent_trades))
    return "\n".join(lines)


MAX_ORDERS_SHOWN = 20  # the rest: the open_orders tool lists them


def _orders(orders: Sequence[OrderRecord]) -> str:
    if not orders:
        return "Open orders: none."
    rows = [f"- {_order(o)}" for o in orders[:MAX_ORDERS_SHOWN]]
    if len(orders) > MAX_ORDERS_SHOWN:
        rows.append(f"- ... and {len(orders) - MAX_ORDERS_SHOWN} more (open_orders() lists "
                    "them)")
    return "\n".join(["Open orders (oldest first):", *rows])


def _order(o: OrderRecord) -> str:
    prices = " ".join(f"{name} {number(value)}" for name, value in (
        ("stop", o.stop_price), ("limit", o.limit_price), ("stop_loss", o.stop_loss))
        if value is not None)
    text = (f"#{o.id} {o.type.value} {o.side.value} {number(o.quantity)} {o.symbol} {prices}, "
            f"{o.time_in_force.value}, placed step {o.step + 1}")
    if o.triggered_at is not None:
        text += ", stop triggered"
    if o.origin is OrderOrigin.STOP_LOSS and o.parent_id is not None:
        text += f", stop-loss of #{o.parent_id}"
    return text


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
    order = "" if t.order_id is None else f" (order #{t.order_id})"
    if not t.filled:
        return f"REFUSED ({t.reason}){order}"
    when = "" if t.filled_at is None else f" at {t.filled_at.isoformat()}"
    return f"filled{when}{order}"
