"""What a run is asked to do: the run spec, validated before anything is stored.

A spec that cannot be played (a holiday, a range with no session, a future date, zero
cash) is refused here, so neither the API nor the runner ever starts a doomed session.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    model_validator,
)
from typing_extensions import TypeAliasType

from core import calendar
from core.errors import InvalidSpec
from core.live_options import LiveOptions
from core.risk_limits import RiskLimits

Symbol = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{1,5}([.\-][A-Z]{1,2})?$"),
    Field(description="Ticker, upper case, e.g. AAPL or BRK.B", examples=["AAPL"]),
]

# Text a database can store: PostgreSQL takes no NUL in text or in JSON. Named types, so
# a JSON schema says it of an object's keys too (propertyNames), at any depth.
if TYPE_CHECKING:  # mypy reads the recursive alias natively
    StorableText = str
    JsonValue = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
else:
    StorableText = TypeAliasType(
        "StorableText", Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")])
    JsonValue = TypeAliasType(
        "JsonValue", Union[StorableText, int, float, bool, list["JsonValue"],  # noqa: UP007
                           dict[StorableText, "JsonValue"], None])
JsonObject = dict[StorableText, JsonValue]

MAX_CASH = Decimal("1000000000000")
MAX_SEED = 2**31 - 1
MAX_REPEATS = 20
# Margin of short positions (core.margin): Reg T's initial 50%; FINRA rule 4210's 30%
# maintenance for shorts of stocks of $5 and more (25% is its minimum for longs only).
INITIAL_MARGIN = Decimal("0.5")
MAINTENANCE_MARGIN = Decimal("0.3")


class Mode(StrEnum):
    INTRADAY = "intraday"
    DAILY = "daily"


class DeciderKind(StrEnum):
    LLM = "llm"
    BUY_AND_HOLD = "buy_and_hold"
    SMA_CROSSOVER = "sma_crossover"
    RANDOM = "random"  # seeded coin flips: the floor a model must beat
    REPLAY = "replay"

    @property
    def is_baseline(self) -> bool:
        """A deterministic rule (given its seed) that a batch plays beside the models."""
        return self in BASELINE_DECIDERS


BASELINE_DECIDERS = (DeciderKind.BUY_AND_HOLD, DeciderKind.SMA_CROSSOVER, DeciderKind.RANDOM)


class FillRule(StrEnum):
    NEXT_OPEN = "next_open"
    CLOSE = "close"


class DataSource(StrEnum):
    POLYGON = "polygon"  # Massive, formerly Polygon.io
    ALPACA = "alpaca"
    SYNTHETIC = "synthetic"  # seeded random bars: demos and tests, never market data
    FILES = "files"
    TABLE = "table"  # bars an operator loaded into stock_prices

    @property
    def is_provider(self) -> bool:
        return self in (DataSource.POLYGON, DataSource.ALPACA)


class RunSpec(BaseModel):
    """A run of one model: an intraday session on one date, or a daily backtest range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode
    symbols: list[Symbol] = Field(min_length=1, max_length=10)
    date: dt.date | None = Field(default=None, description="Intraday: the trading date")
    start: dt.date | None = Field(default=None, description="Daily: first date (inclusive)")
    end: dt.date | None = Field(default=None, description="Daily: last date (inclusive)")
    initial_cash: Decimal = Field(
        default=Decimal("100000"), gt=0, le=MAX_CASH, max_digits=20, decimal_places=4
    )
    decider: DeciderKind | None = Field(
        default=None,
        description="None: the model's LLM when one is configured, else sma_crossover",
    )
    decider_params: JsonObject = Field(
        default_factory=dict,
        description="Decider options, e.g. {fast: 5, slow: 20} or {source_run_id: 7}",
    )
    fill: FillRule = FillRule.NEXT_OPEN
    fee_per_trade: Decimal = Field(default=Decimal("0"), ge=0, le=Decimal("10000"))
    data: DataSource | None = Field(
        default=None,
        description="Where bars come from. Unset: the bar cache, then the configured "
                    "provider (polygon or alpaca); the stored run names the source it got. "
                    "`synthetic` is seeded random bars for demos and tests, not market data")
    max_cost_usd: Decimal | None = Field(
        default=None, gt=0, le=Decimal("1000000"), max_digits=14, decimal_places=6,
        description="LLM spend budget in US dollars: the run stops (as `stopped`, with the "
                    "reason) at the step that reaches it, and no model call is made past "
                    "it. Unset: the model's parameters.budget.max_cost_usd, else the "
                    "runner's TICKRUN_RUNNER_MAX_COST_USD")
    max_tokens: int | None = Field(
        default=None, ge=1, le=10**12, strict=True,
        description="LLM token budget (input + output) of the whole run, enforced like "
                    "max_cost_usd. Unset: parameters.budget.max_tokens of the model, else "
                    "TICKRUN_RUNNER_MAX_TOKENS")
    # Strict: a JSON `true` or "7" is not a seed (the schema says integer).
    seed: int = Field(default=0, ge=0, le=MAX_SEED, strict=True,
                      description="The run's seed: of synthetic bars, of the random "
                                  "decider, and the LLM provider's sampling seed (honoured "
                                  "by some models). A batch gives each repeat its own")
    repeat: int = Field(
        default=0, ge=0, le=MAX_REPEATS - 1, strict=True,
        description="Which repeat of its batch cell this run is (0 first); its seed is the "
                    "batch's seed + repeat, at least `repeat`. Synthetic bars are drawn from "
                    "seed - repeat, so a cell's repeats play the same bars")
    baseline: bool = Field(
        default=False, strict=True,
        description="A baseline a batch played beside its models (buy_and_hold, "
                    "sma_crossover or random, on the same bars and options), not a model's "
                    "run; it belongs to the batch's first model. A label, as `repeat`")
    initial_margin: Decimal = Field(
        default=INITIAL_MARGIN, gt=0, le=1, max_digits=5, decimal_places=4,
        description="Short sales: a short is refused when, after it, equity would be under "
                    "this share of the short positions' value (Reg T: 0.5)")
    maintenance_margin: Decimal = Field(
        default=MAINTENANCE_MARGIN, gt=0, le=1, max_digits=5, decimal_places=4,
        description="Short sales: at a bar's close with equity under this share of the "
                    "short positions' value, every short is covered at that close (a margin "
                    "call). At most initial_margin; 0.3 is FINRA's rule for shorts")
    flat_at_close: bool = Field(
        default=False, strict=True,
        description="Intraday runs: after the last bar's decision, cancel the open orders "
                    "and close every position at that bar's close")
    blind: bool = Field(
        default=False, strict=True,
        description="The agent sees neither the tickers nor the calendar: pseudonyms "
                    "(STOCK_A...) and times counted from the first bar, in the prompt and "
                    "every tool answer; no research or outside tools. Set against open runs "
                    "of the same model, it tells memory of the period from trading")
    risk: RiskLimits | None = Field(
        default=None,
        description="A risk guard outside the agent, checked before any order is sent: "
                    "an order over a limit (notional, position per symbol, orders per "
                    "minute) is refused with the reason; the daily loss or drawdown limit "
                    "stops the run (as `stopped`, with the reason). An order that reduces a "
                    "position is never refused. Unset: no guard")

    live: LiveOptions | None = Field(
        default=None,
        description="Play the session as it happens, from the provider's real-time "
                    "stream (intraday, data polygon or alpaca): today's while it is open, "
                    "else the next one (`date` may be left out). Market orders fill at the "
                    "decision bar's close (fill: close). Unset: a replay of a past session")

    # Options added after the first release, left out of the stored spec while they
    # keep their default: a runner of the previous release (a rolling upgrade) reads
    # specs with extra="forbid" and would refuse one that names them.
    NEWER_OPTIONS: ClassVar[tuple[str, ...]] = (
        "initial_margin", "maintenance_margin", "flat_at_close", "repeat", "baseline",
        "blind", "risk", "live")

    @property
    def bars_seed(self) -> int:
        """The seed of synthetic bars: a batch cell's repeats play the same bars (its
        first repeat's seed); they differ by the decider's seed only."""
        return self.seed - self.repeat

    @model_validator(mode="before")
    @classmethod
    def _live_defaults(cls, data: Any) -> Any:
        """A live run's session is today's (or the next) unless it names one, and its
        market orders fill at the decision bar's close unless it says otherwise (and
        then it is refused: the next bar's open is in the future)."""
        if not isinstance(data, dict) or data.get("live") is None:
            return data
        data = dict(data)
        if data.get("mode") == Mode.INTRADAY.value and data.get("date") is None:
            data["date"] = calendar.live_session(dt.datetime.now(dt.UTC))
        data.setdefault("fill", FillRule.CLOSE.value)
        return data

    @model_validator(mode="after")
    def _live_fits(self) -> RunSpec:
        if self.live is None:
            return self
        if self.mode is not Mode.INTRADAY:
            raise ValueError("a live run is intraday: it plays one session as it happens")
        if self.data is not None and not self.data.is_provider:
            raise ValueError("a live run's bars come from a provider's stream: data "
                             "polygon or alpaca (or unset: the configured provider)")
        if self.fill is not FillRule.CLOSE:
            raise ValueError("a live run fills at the decision bar's close (fill: close): "
                             "the next bar's open is in the future when its orders go")
        if self.blind:
            raise ValueError("a live run cannot be blind: today's session is in no "
                             "model's training data")
        return self

    @model_validator(mode="after")
    def _repeat_within_seed(self) -> RunSpec:
        if self.seed < self.repeat:
            raise ValueError("seed must be at least repeat (a repeat's seed is its cell's "
                             "seed + repeat)")
        return self

    @model_validator(mode="after")
    def _dates_fit_mode(self) -> RunSpec:
        if self.mode is Mode.INTRADAY:
            if self.date is None or self.start is not None or self.end is not None:
                raise ValueError("intraday runs take `date` and neither `start` nor `end`")
            if len(set(self.symbols)) != len(self.symbols):
                raise ValueError("symbols must be distinct")
        else:
            if self.start is None or self.end is None or self.date is not None:
                raise ValueError("daily runs take `start` and `end` and no `date`")
            if self.end < self.start:
                raise ValueError("`end` is before `start`")
        if self.decider is DeciderKind.REPLAY and "source_run_id" not in self.decider_params:
            raise ValueError("the replay decider needs decider_params.source_run_id")
        if self.maintenance_margin > self.initial_margin:
            raise ValueError(f"maintenance_margin {self.maintenance_margin} is above "
                             f"initial_margin {self.initial_margin}")
        if self.baseline and not (self.decider is not None and self.decider.is_baseline):
            raise ValueError("a baseline run plays buy_and_hold, sma_crossover or random "
                             "(give `decider`)")
        if self.flat_at_close and self.mode is not Mode.INTRADAY:
            raise ValueError("flat_at_close is for intraday runs (a daily backtest has no "
                             "session close to be flat at)")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _validated_once(cls, data: Any, handler: ModelWrapValidatorHandler[RunSpec]
                        ) -> RunSpec:
        """A spec given as a RunSpec (a run document's, read from the store) was
        validated when made, and is frozen: pydantic would run the `after` checks above
        again for every model that holds it (a twentieth of a list page's time). Last
        of the validators, so it wraps them all."""
        if isinstance(data, cls):
            return data
        return handler(data)

    def stored(self) -> dict[str, Any]:
        """The spec as the store keeps it: unset options and newer ones at their
        default left out (NEWER_OPTIONS)."""
        data = self.model_dump(mode="json", exclude_none=True)
        for name in self.NEWER_OPTIONS:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data

    @property
    def first_day(self) -> dt.date:
        return self.date if self.date is not None else self.start  # type: ignore[return-value]

    @property
    def last_day(self) -> dt.date:
        return self.date if self.date is not None else self.end  # type: ignore[return-value]

    @property
    def interval(self) -> str:
        return "1m" if self.mode is Mode.INTRADAY else "1d"

    def session_days(self) -> list[dt.date]:
        """The trading sessions the run plays (one for an intraday run)."""
        if self.mode is Mode.INTRADAY:
            return [self.first_day]
        return calendar.sessions_in_range(self.first_day, self.last_day)

    def check_playable(self, today: dt.date | None = None, *,
                       now: dt.datetime | None = None) -> None:
        """Refuse future dates and dates with no session; raises InvalidSpec. A live
        run's date must be the session live at `now` (today's before its close, else the
        next one)."""
        if self.live is not None:
            self._check_live(now or dt.datetime.now(dt.UTC))
            return
        today = today or calendar.today_in_new_york()
        if self.last_day > today:
            raise InvalidSpec(f"{self.last_day} is in the future (today is {today})")
        if self.mode is Mode.INTRADAY:
            if not calendar.is_session(self.first_day):
                raise InvalidSpec(f"{self.first_day} is not a trading session (XNYS)")
        else:
            calendar.sessions_in_range(self.first_day, self.last_day)

    def _check_live(self, now: dt.datetime) -> None:
        if not calendar.is_session(self.first_day):
            raise InvalidSpec(f"{self.first_day} is not a trading session (XNYS)")
        live = calendar.live_session(now)
        if self.first_day != live:
            raise InvalidSpec(f"a live run plays the session live now, {live} (today's "
                              f"until its close, else the next one), not {self.first_day}")

    def step_count(self) -> int:
        if self.mode is Mode.INTRADAY:
            return len(calendar.session_minutes(self.first_day))
        return len(calendar.sessions_in_range(self.first_day, self.last_day))


def replay_mismatch(source: RunSpec, replay: RunSpec) -> str | None:
    """How `replay` differs from the run it replays, for people; None when it may replay
    it. Recorded orders replayed on other symbols, days or bars would be other trades,
    not a reproduction. A source stored without a data source (not through the API)
    cannot say which it had: that is not checked."""
    differences = []
    if source.symbols != replay.symbols:
        differences.append(f"symbols {','.join(source.symbols)} "
                           f"(this run: {','.join(replay.symbols)})")
    if _span(source) != _span(replay):
        differences.append(f"dates {_span(source)} (this run: {_span(replay)})")
    if source.data is not None and replay.data is not None:
        if source.data is not replay.data:
            differences.append(f"data {source.data.value} (this run: {replay.data.value})")
        elif (source.data is DataSource.SYNTHETIC
              and source.bars_seed != replay.bars_seed):
            differences.append(f"synthetic seed {source.bars_seed} "
                               f"(this run: {replay.bars_seed})")
    return "has other " + "; ".join(differences) if differences else None


def _span(spec: RunSpec) -> str:
    if spec.mode is Mode.INTRADAY:
        return f"intraday {spec.first_day}"
    return f"daily {spec.first_day}..{spec.last_day}"
