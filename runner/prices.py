"""A run's bars on its timeline, as the loop reads them: what a step sees, what an
order decided at a step fills at, and what the portfolio is worth at a close.

No look-ahead: a decision at step t sees bars up to t; its market orders fill at the
next bar's open by default, at this bar's close under the close rule and on the last
step (which has no next bar).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.bars import Bar
from core.records import Portfolio
from core.spec import FillRule
from runner.marketdata import Timeline


@dataclass(frozen=True)
class RunPrices:
    timeline: Timeline
    bars: dict[str, list[Bar]]  # per symbol, one bar per timeline step
    fill: FillRule = FillRule.NEXT_OPEN

    def __len__(self) -> int:
        return len(self.timeline)

    def time(self, step: int) -> dt.datetime:
        return self.timeline.times[step]

    def is_last(self, step: int) -> bool:
        return step + 1 >= len(self.timeline)

    def history(self, step: int) -> dict[str, Sequence[Bar]]:
        """Each symbol's bars up to and including `step`: what a decision there sees."""
        return {s: b[: step + 1] for s, b in self.bars.items()}

    def at(self, step: int) -> dict[str, Bar]:
        return {s: b[step] for s, b in self.bars.items()}

    def closes(self, step: int) -> dict[str, Decimal]:
        return {s: b[step].close for s, b in self.bars.items()}

    def equity(self, portfolio: Portfolio, step: int) -> Decimal:
        return portfolio.equity(self.closes(step))

    def fill_step(self, step: int) -> int:
        """The bar an order decided at `step` fills on: the next one by default; this one
        under the close rule, and on the last step, which has no next bar."""
        return step if self.fill is FillRule.CLOSE or self.is_last(step) else step + 1

    def fill_prices(self, step: int) -> dict[str, Decimal]:
        """The fill bar's open when it is the next bar; the decision bar's close else."""
        at = self.fill_step(step)
        if at == step:
            return self.closes(step)
        return {s: b[at].open for s, b in self.bars.items()}
