"""A run's LLM spend against its budget and its user's daily limit (core/spend.py).

The session asks `over()` before each model call (through the step context, with what
the step has used so far) and after each recorded decision; the first limit reached
ends the run at that step boundary as `stopped`, with the reason. The user's spend of
the day is re-read from the database every few seconds, so the runs of one user share
one daily limit without talking to each other.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidSpec
from core.records import Model, Run
from core.spend import Spend, day_window, plain, usd, utc_day
from core.store import Store
from runner.settings import RunnerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Limit(StrEnum):
    """Which limit ended a run (the budget-stops metric's label)."""

    RUN_COST = "run_cost"
    RUN_TOKENS = "run_tokens"
    DAILY_SPEND = "daily_spend"
    COST_UNKNOWN = "cost_unknown"


@dataclass(frozen=True, slots=True)
class Exhausted:
    limit: Limit
    reason: str


class ModelBudget(BaseModel):
    """A model's `parameters.budget`: the default budget of its runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cost_usd: Decimal | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, ge=1)


@dataclass(frozen=True, slots=True)
class Budget:
    max_cost_usd: Decimal | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, run: Run, model: Model, settings: RunnerSettings) -> Budget:
        """The spec's budget, else the model's parameters.budget, else the settings'."""
        try:
            own = ModelBudget.model_validate((model.parameters or {}).get("budget") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidSpec(f"bad parameters.budget of model {model.signature!r}: "
                              f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
        spec = run.spec
        return cls(
            max_cost_usd=_first(spec.max_cost_usd, own.max_cost_usd, settings.max_cost_usd),
            max_tokens=_first(spec.max_tokens, own.max_tokens, settings.max_tokens))

    def to_json(self) -> dict[str, object]:
        return {"max_cost_usd": None if self.max_cost_usd is None else str(self.max_cost_usd),
                "max_tokens": self.max_tokens}


def _first(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


class SpendGuard:
    """One run's spend, its budget, and its user's spend of the (UTC) day."""

    def __init__(self, store: Store, run: Run, budget: Budget, daily_limit: Decimal | None,
                 *, llm: str | None = None, refresh_seconds: float = 2.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store = store
        self.run = run
        self.budget = budget
        self.daily_limit = daily_limit
        self.llm = llm
        self.spent: Spend = store.run_spend(run.id)  # a resumed run counts what it spent
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._next_refresh = 0.0
        self._day = utc_day(clock())
        self._user_spent = Decimal(0)
        self._unpriced = False
        self.refresh(force=True)

    @property
    def enforces_cost(self) -> bool:
        return self.budget.max_cost_usd is not None or self.daily_limit is not None

    def record(self, tokens: int, cost: Decimal | None) -> None:
        """A decision was recorded with these tokens and this cost (None: unknown)."""
        self.spent = self.spent.plus(tokens, cost)
        self._user_spent += cost or Decimal(0)
        if cost is None and tokens and self.enforces_cost:
            self._unpriced = True

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the user's spend today (every run of theirs adds to it)."""
        now = time.monotonic()
        if self.daily_limit is None or (not force and now < self._next_refresh):
            return
        self._next_refresh = now + self._refresh_seconds
        self._day = utc_day(self._clock())
        spent = self.store.spend_by_user([self.run.user_id], *day_window(self._day))
        self._user_spent = spent.get(self.run.user_id, Decimal(0))

    def over(self, pending_tokens: int = 0, pending_cost: Decimal | None = None
             ) -> Exhausted | None:
        """The first limit reached by what was recorded plus what the current step has
        used so far; None while there is room."""
        if self._unpriced:
            return Exhausted(Limit.COST_UNKNOWN, "LLM budget cannot be enforced: the provider "
                             "reported no cost and the price table has no price for "
                             f"{self.llm or 'the model'} (set TICKRUN_LLM_PRICES)")
        cost = self.spent.cost_usd + (pending_cost or Decimal(0))
        tokens = self.spent.tokens + pending_tokens
        b = self.budget
        if b.max_cost_usd is not None and cost >= b.max_cost_usd:
            return Exhausted(Limit.RUN_COST,
                             f"budget exhausted: {usd(cost)} of {usd(b.max_cost_usd)}")
        if b.max_tokens is not None and tokens >= b.max_tokens:
            return Exhausted(Limit.RUN_TOKENS, f"token budget exhausted: {tokens:,} of "
                                               f"{b.max_tokens:,} tokens")
        today = self._user_spent + (pending_cost or Decimal(0))
        if self.daily_limit is not None and today >= self.daily_limit:
            return Exhausted(Limit.DAILY_SPEND,
                             f"daily LLM spend limit reached: {usd(today)} of "
                             f"{usd(self.daily_limit)} for {self.run.user_id} on {self._day} UTC")
        return None

    def summary(self) -> dict[str, object]:
        """For the run's result: the budget and what the run spent against it."""
        return {**self.budget.to_json(),
                "daily_limit_usd": None if self.daily_limit is None else str(self.daily_limit),
                "spent_usd": str(plain(self.spent.cost_usd)), "tokens": self.spent.tokens}


def daily_limit_of(store: Store, user_id: str, default: Decimal | None) -> Decimal | None:
    """The user's own limit if an operator set one (None there: no limit), else the
    default."""
    own = store.daily_limits([user_id])
    return own.get(user_id, default)
