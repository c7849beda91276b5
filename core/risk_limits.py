"""The limits of a run's risk guard, as a run spec names them (core.risk enforces them).

Its own module, importing nothing of the records, so that core.spec can name it
(core.records imports core.spec).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

MAX_AMOUNT = Decimal("1000000000000")  # as a run's initial cash at most


class RiskLimits(BaseModel):
    """Limits checked outside the agent, before any order leaves tickrun. Each is
    optional: unset, it is not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_order_notional: Decimal | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, max_digits=20, decimal_places=4,
        description="US dollars: an order whose quantity x price is over it is refused")
    max_position_shares: Decimal | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, max_digits=20, decimal_places=6,
        description="Shares per symbol, long or short (absolute): an order that would "
                    "leave a position over it is refused. An order that reduces a "
                    "position never is")
    max_position_notional: Decimal | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, max_digits=20, decimal_places=4,
        description="US dollars per symbol, long or short (absolute shares x price): an "
                    "order that would leave a position over it is refused. An order that "
                    "reduces a position never is")
    max_orders_per_minute: int | None = Field(
        default=None, ge=1, le=100000, strict=True,
        description="Orders sent in any sliding minute (by the bars' clock); one more is "
                    "refused. An order that reduces a position never is")
    max_daily_loss: Decimal | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, max_digits=20, decimal_places=4,
        description="US dollars below the New York day's first equity: the run stops (as "
                    "`stopped`, with the reason) at the step boundary that finds it")
    max_drawdown_pct: Decimal | None = Field(
        default=None, gt=0, le=100, max_digits=7, decimal_places=4,
        description="Percent below the run's peak equity: the run stops (as `stopped`, "
                    "with the reason) at the step boundary that finds it")
