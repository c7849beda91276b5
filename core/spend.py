"""LLM spend: what a run and a user may spend, and the UTC day spend adds up in.

Two kinds of limit, both in US dollars of LLM cost (tokens too for a run):
- a run's budget (`max_cost_usd`, `max_tokens`: the spec, else the model's
  `parameters.budget`, else the runner's settings), enforced by the runner before each
  model call and at each step boundary;
- a user's daily limit (an operator's per-user override in `user_limits`, else
  TICKRUN_USER_DAILY_COST_USD), enforced at admission (over-limit runs wait queued with
  the reason) and by the runners during their runs.
A day is a UTC calendar day: the same for every user and every process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SPEND_WAIT_PREFIX = "waiting: daily LLM spend limit"


class SpendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_", extra="ignore")

    user_daily_cost_usd: Decimal | None = Field(
        default=None, ge=0, max_digits=18, decimal_places=8,
        description="Each user's LLM spend per UTC day, unless an operator set the user's "
                    "own limit (PUT /v1/usage/limits/{user}); unset: no daily limit")


@dataclass(frozen=True, slots=True)
class Spend:
    """What decisions consumed: tokens, and dollars where the cost is known."""

    decisions: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_usd: Decimal = Decimal(0)
    unknown_cost: int = 0  # decisions that used tokens but have no cost (no price)

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def plus(self, tokens: int, cost: Decimal | None) -> Spend:
        return Spend(self.decisions + 1, self.tokens_in + tokens, self.tokens_out,
                     self.tokens_cached, self.cost_usd + (cost or Decimal(0)),
                     self.unknown_cost + (1 if cost is None and tokens else 0))

    def to_json(self) -> dict[str, object]:
        return {"decisions": self.decisions, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "tokens_cached": self.tokens_cached,
                "cost_usd": str(plain(self.cost_usd)),
                "unknown_cost_decisions": self.unknown_cost}


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One user's spend on one UTC day with one model."""

    day: dt.date
    model_id: int
    signature: str
    llm: str | None
    spend: Spend


@dataclass(frozen=True, slots=True)
class DailyLimit:
    """The daily limits admission applies on `day` (UTC)."""

    default_usd: Decimal | None
    day: dt.date

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        return day_window(self.day)


def utc_day(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.UTC).date()


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a UTC day."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def plain(value: Decimal) -> Decimal:
    """Without the trailing zeros a NUMERIC column adds (0.06000000 -> 0.06), never in
    exponent form (100, not 1E+2)."""
    return Decimal(format(value.normalize(), "f"))


def usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')) if value >= Decimal('0.01') else value:,}"


def over_daily_limit(spent: Decimal, limit: Decimal, day: dt.date) -> str:
    """Why a user's queued run waits (its status reason)."""
    return (f"{SPEND_WAIT_PREFIX} reached ({usd(spent)} of {usd(limit)} on {day} UTC); "
            "admitted again after 00:00 UTC or when an operator raises the limit")
