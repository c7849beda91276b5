"""Deterministic baselines: buy-and-hold, SMA crossover and a seeded random trader.

They are the default when no LLM is configured (SMA crossover), the yardsticks every
batch plays beside its models, and what tests and benchmarks drive. Sizes use the latest close (the
fill price is not known yet: no look-ahead); a fill that no longer fits is refused.
"""

from __future__ import annotations

import random
from decimal import ROUND_DOWN, Decimal

from core.records import Order, Side
from runner.deciders.base import DecisionResult, StepContext

# Keep a little cash back so a next-open fill a few cents higher is not refused.
SIZE_BUFFER = Decimal("0.98")


def affordable(cash: Decimal, price: Decimal, fee: Decimal = Decimal(0),
               buffer: Decimal = SIZE_BUFFER) -> Decimal:
    if price <= 0 or cash <= fee:
        return Decimal(0)
    return ((cash - fee) * buffer / price).to_integral_value(rounding=ROUND_DOWN)


class BuyAndHold:
    name = "buy_and_hold"
    blocking = False

    def decide(self, ctx: StepContext) -> DecisionResult:
        if ctx.portfolio.holdings:
            return DecisionResult.hold("holding since the first step")
        budget = ctx.portfolio.cash / len(ctx.run.spec.symbols)
        orders = [Order(Side.BUY, s, q) for s in ctx.run.spec.symbols
                  if (q := affordable(budget, ctx.price(s), ctx.run.spec.fee_per_trade)) > 0]
        if not orders:
            return DecisionResult.hold("cash does not buy a single share")
        return DecisionResult(action="buy", orders=orders, outcome="trade",
                              reasoning="buy-and-hold: invest the cash once and keep it")


class SmaCrossover:
    """Long when the fast simple moving average is above the slow one, flat otherwise."""

    blocking = False

    def __init__(self, fast: int = 5, slow: int = 20, size_buffer: Decimal = SIZE_BUFFER) -> None:
        if not 0 < fast < slow:
            raise ValueError(f"need 0 < fast < slow, got fast={fast} slow={slow}")
        if not 0 < size_buffer <= 1:
            raise ValueError(f"need 0 < size_buffer <= 1, got {size_buffer}")
        self.fast = fast
        self.slow = slow
        self.size_buffer = size_buffer
        self.name = "sma_crossover"

    def _sma(self, closes: list[Decimal], n: int, end: int) -> Decimal:
        return sum(closes[end - n:end], Decimal(0)) / n

    def decide(self, ctx: StepContext) -> DecisionResult:
        orders, notes = [], []
        budget = ctx.portfolio.cash / max(1, sum(
            1 for s in ctx.run.spec.symbols if ctx.portfolio.held(s) == 0))
        for symbol in ctx.run.spec.symbols:
            closes = [b.close for b in ctx.history[symbol][-(self.slow + 1):]]
            if len(closes) < self.slow + 1:
                notes.append(f"{symbol}: warming up ({len(closes)}/{self.slow + 1} bars)")
                continue
            n = len(closes)
            fast_now, slow_now = self._sma(closes, self.fast, n), self._sma(closes, self.slow, n)
            fast_prev = self._sma(closes, self.fast, n - 1)
            slow_prev = self._sma(closes, self.slow, n - 1)
            held = ctx.portfolio.held(symbol)
            if fast_prev <= slow_prev and fast_now > slow_now and held == 0:
                qty = affordable(budget, closes[-1], ctx.run.spec.fee_per_trade,
                                 self.size_buffer)
                if qty > 0:
                    orders.append(Order(Side.BUY, symbol, qty))
                    notes.append(f"{symbol}: SMA{self.fast} {fast_now:.2f} crossed above "
                                 f"SMA{self.slow} {slow_now:.2f}: buy {qty}")
            elif fast_prev >= slow_prev and fast_now < slow_now and held > 0:
                orders.append(Order(Side.SELL, symbol, held))
                notes.append(f"{symbol}: SMA{self.fast} {fast_now:.2f} crossed below "
                             f"SMA{self.slow} {slow_now:.2f}: sell {held}")
        reasoning = "; ".join(notes) or "no crossover"
        if not orders:
            return DecisionResult.hold(reasoning)
        action = ",".join(sorted({o.side.value for o in orders}))
        return DecisionResult(action=action, orders=orders, reasoning=reasoning, outcome="trade")


class RandomTrader:
    """Seeded coin flips: at each step, each symbol's position is flipped (bought with
    its share of the cash when flat, sold whole when long) with `trade_probability`, and
    held otherwise. Long or flat only, sized as SmaCrossover sizes.

    A draw comes from (seed, session, symbol, step) alone, not from the steps before nor
    the clock: the same seed makes the same decisions, a run resumed from a checkpoint
    decides its remaining steps as it would have uninterrupted, and one seed still draws
    differently on each symbol and session of a batch."""

    name = "random"
    blocking = False

    def __init__(self, seed: int, trade_probability: float = 0.1,
                 size_buffer: Decimal = SIZE_BUFFER) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"need an integer seed, got {seed!r}")
        if not 0 <= trade_probability <= 1:
            raise ValueError(f"need 0 <= trade_probability <= 1, got {trade_probability}")
        if not 0 < size_buffer <= 1:
            raise ValueError(f"need 0 < size_buffer <= 1, got {size_buffer}")
        self.seed = seed
        self.trade_probability = trade_probability
        self.size_buffer = size_buffer

    def draw(self, session: str, symbol: str, step: int) -> float:
        """A uniform draw in [0, 1). random.Random hashes a str seed with SHA-512: the
        same on every platform and in every process (no PYTHONHASHSEED)."""
        return random.Random(f"tickrun.random:{self.seed}:{session}:{symbol}:{step}").random()

    def decide(self, ctx: StepContext) -> DecisionResult:
        spec = ctx.run.spec
        orders, notes = [], []
        budget = ctx.portfolio.cash / max(1, sum(
            1 for s in spec.symbols if ctx.portfolio.held(s) == 0))
        for symbol in spec.symbols:
            draw = self.draw(spec.first_day.isoformat(), symbol, ctx.step)
            if draw >= self.trade_probability:
                continue
            held = ctx.portfolio.held(symbol)
            if held > 0:
                orders.append(Order(Side.SELL, symbol, held))
                notes.append(f"{symbol}: drew {draw:.3f} < {self.trade_probability}: "
                             f"sell {held}")
            elif held == 0:
                qty = affordable(budget, ctx.price(symbol), ctx.run.spec.fee_per_trade,
                                 self.size_buffer)
                if qty > 0:
                    orders.append(Order(Side.BUY, symbol, qty))
                    notes.append(f"{symbol}: drew {draw:.3f} < {self.trade_probability}: "
                                 f"buy {qty}")
        if not orders:
            return DecisionResult.hold("; ".join(notes) or "no trade drawn")
        action = ",".join(sorted({o.side.value for o in orders}))
        return DecisionResult(action=action, orders=orders, outcome="trade",
                              reasoning="random: " + "; ".join(notes))
