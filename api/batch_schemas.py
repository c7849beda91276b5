"""Bodies of /v1/batches: a matrix of runs (models x symbols x dates or ranges, each
cell repeated), the baselines played beside it, and its state as one (its comparison's
are in api/compare_schemas.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import JsonDate, StorableBody
from core import calendar
from core.live_options import LiveOptions
from core.spec import (
    BASELINE_DECIDERS,
    MAX_REPEATS,
    MAX_SEED,
    DataSource,
    DeciderKind,
    FillRule,
    JsonObject,
    Mode,
    RunSpec,
    Symbol,
)
from core.status import RunStatus

MAX_BATCH_RUNS = 500


def as_in_spec(name: str) -> Any:
    """A run option every cell shares, declared exactly as RunSpec declares it."""
    return RunSpec.model_fields[name]


class RunOptions(BaseModel):
    """The options every run of a batch, and every run a schedule fires, shares."""

    initial_cash: Decimal = as_in_spec("initial_cash")
    decider: DeciderKind | None = as_in_spec("decider")
    decider_params: JsonObject = as_in_spec("decider_params")
    fill: FillRule = as_in_spec("fill")
    fee_per_trade: Decimal = as_in_spec("fee_per_trade")
    initial_margin: Decimal = as_in_spec("initial_margin")
    maintenance_margin: Decimal = as_in_spec("maintenance_margin")
    flat_at_close: bool = as_in_spec("flat_at_close")
    data: DataSource | None = as_in_spec("data")
    seed: int = as_in_spec("seed")
    max_cost_usd: Decimal | None = as_in_spec("max_cost_usd")
    max_tokens: int | None = as_in_spec("max_tokens")
    blind: bool = as_in_spec("blind")
    live: LiveOptions | None = as_in_spec("live")

    def live_fill(self, options: dict[str, Any]) -> dict[str, Any]:
        """A live run fills at the decision bar's close unless the body said otherwise
        (and then RunSpec refuses it with the reason)."""
        if self.live is not None and "fill" not in self.model_fields_set:
            options["fill"] = FillRule.CLOSE
        return options


OPTIONS = tuple(RunOptions.model_fields)

BATCH_EXAMPLE: dict[str, Any] = {
    "name": "sma vs hold", "model_ids": [1, 2], "symbols": ["AAPL", "MSFT"],
    "dates": ["2025-06-02", "2025-06-03"], "decider": "sma_crossover", "data": "synthetic"}


class DateRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: JsonDate = Field(description="First date (inclusive)")
    end: JsonDate = Field(description="Last date (inclusive)")


ModelId = Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
DISTINCT: dict[str, Any] = {"uniqueItems": True}


class Cell(BaseModel):
    """One run of the batch, before it is validated as a run spec: a repeat of a model's
    cell of the matrix, or a baseline (played by `baseline`, under the first model)."""

    model_id: int
    symbol: str
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    seed: int = 0
    repeat: int = 0
    baseline: DeciderKind | None = None
    blind: bool | None = None  # None: the batch's `blind`

    @property
    def label(self) -> str:
        when = self.date or f"{self.start}..{self.end}"
        if self.baseline is not None:
            return f"baseline {self.baseline.value} {self.symbol} {when}"
        again = f" repeat {self.repeat}" if self.repeat else ""
        blind = " blind" if self.blind else ""
        return f"model {self.model_id}{blind} {self.symbol} {when}{again}"


class BatchCreate(StorableBody, RunOptions):
    """Runs of every model on every symbol (one symbol a run) on every date (intraday
    sessions) or range (daily backtests), with the same options; each such cell
    `repeats` times, repeat k with seed `seed + k`; and, with `baselines`, one run of
    each baseline decider on every symbol and date or range, on the same bars and
    options."""

    # `dates` or `ranges`, one of them: said in the schema as well as checked.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [BATCH_EXAMPLE],
        "oneOf": [{"required": [name], "properties": {name: {"type": "array"}}}
                  for name in ("dates", "ranges")]})

    name: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")
    model_ids: list[ModelId] = Field(min_length=1, max_length=100,
                                     json_schema_extra=DISTINCT,
                                     description="Distinct ids of the caller's models")
    symbols: list[Symbol] = Field(min_length=1, max_length=100, json_schema_extra=DISTINCT,
                                  description="Distinct tickers; each run trades one")
    dates: list[JsonDate] | None = Field(
        default=None, min_length=1, max_length=1000, json_schema_extra=DISTINCT,
        description="Intraday: one run per session date (give `dates` or `ranges`)")
    ranges: list[DateRange] | None = Field(
        default=None, min_length=1, max_length=1000, json_schema_extra=DISTINCT,
        description="Daily: one backtest per range (give `dates` or `ranges`)")
    repeats: int = Field(
        default=1, ge=1, le=MAX_REPEATS, strict=True,
        description="Runs of each cell (model x symbol x date or range). Repeat k (0 first) "
                    "has seed `seed + k` and `repeat: k` in its spec: the same for every "
                    "model, so repeat k of two models meet the same synthetic bars, and an "
                    "LLM is sent that seed (models that honour it sample reproducibly)")
    baselines: bool = Field(
        default=True, strict=True,
        description="Also play buy_and_hold, sma_crossover and random once on every symbol "
                    "and date or range, with the batch's options and `seed` (repeat 0's "
                    "bars) and their default decider_params: runs of the first model, "
                    "marked `baseline: true` in their spec, their `decider` naming them")

    blind_and_open: bool = Field(
        default=False, strict=True,
        description="Play every model's cell twice, open and blind (tickers and dates "
                    "hidden: see `blind` in a run spec), on the same bars and seeds: the "
                    "comparison names the blind player `<signature> (blind)`, so memory of "
                    "the period shows as the gap between the two")

    @model_validator(mode="before")
    @classmethod
    def _live_session(cls, data: Any) -> Any:
        """Live runs side by side: the session live now, unless `dates` names it."""
        if (isinstance(data, dict) and data.get("live") is not None
                and data.get("dates") is None and data.get("ranges") is None):
            data = {**data, "dates": [calendar.live_session(dt.datetime.now(dt.UTC))]}
        return data

    @model_validator(mode="after")
    def _matrix(self) -> BatchCreate:
        if (self.dates is None) == (self.ranges is None):
            raise ValueError("give either `dates` (intraday) or `ranges` (daily)")
        for name, values in (("model_ids", self.model_ids), ("symbols", self.symbols),
                             ("dates", self.dates or []),
                             ("ranges", [(r.start, r.end) for r in self.ranges or []])):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct")
        if (size := self.size) > MAX_BATCH_RUNS:
            raise ValueError(f"the batch would make {size} runs (repeats and baselines "
                             f"count); at most {MAX_BATCH_RUNS}")
        if self.seed + self.repeats - 1 > MAX_SEED:
            raise ValueError(f"repeat {self.repeats - 1} would have seed "
                             f"{self.seed + self.repeats - 1}, over {MAX_SEED}: give a "
                             f"lower seed")
        return self

    @property
    def mode(self) -> Mode:
        return Mode.INTRADAY if self.dates is not None else Mode.DAILY

    @property
    def size(self) -> int:
        """How many runs it makes: repeats and baselines count."""
        sessions = len(self.symbols) * len(self.dates or self.ranges or [])
        return sessions * (len(self.model_ids) * self.repeats * self.ways
                           + (len(BASELINE_DECIDERS) if self.baselines else 0))

    @property
    def ways(self) -> int:
        """How many times each model cell is played: open and blind, or as `blind` says."""
        return 2 if self.blind_and_open else 1

    def cells(self) -> list[Cell]:
        """Its runs in order: model, then symbol, then date or range, then repeat; then
        the baselines by symbol, date or range, and decider (buy_and_hold, sma_crossover,
        random)."""
        spans: list[dict[str, dt.date]] = (
            [{"date": d} for d in self.dates] if self.dates is not None
            else [{"start": r.start, "end": r.end} for r in self.ranges or []])
        ways: list[bool | None] = [False, True] if self.blind_and_open else [None]
        runs = [Cell(model_id=m, symbol=s, seed=self.seed + k, repeat=k, blind=way, **span)
                for m in self.model_ids for way in ways for s in self.symbols
                for span in spans for k in range(self.repeats)]
        if self.baselines:
            runs += [Cell(model_id=self.model_ids[0], symbol=s, seed=self.seed,
                          baseline=kind, **span)
                     for s in self.symbols for span in spans for kind in BASELINE_DECIDERS]
        return runs

    def spec_of(self, cell: Cell) -> RunSpec:
        """The cell's run spec; a ValidationError when it is not one."""
        options: dict[str, Any] = {k: getattr(self, k) for k in OPTIONS}
        options.update(seed=cell.seed, repeat=cell.repeat)
        if cell.blind is not None:
            options.update(blind=cell.blind)
        if cell.baseline is not None:  # a baseline reads no prompt: never blind
            options.update(decider=cell.baseline, decider_params={}, baseline=True,
                           blind=False)
        return RunSpec.model_validate({
            "mode": self.mode, "symbols": [cell.symbol], "date": cell.date,
            "start": cell.start, "end": cell.end, **self.live_fill(options)})


class BatchProgress(BaseModel):
    steps_done: int = Field(description="Steps done by all the batch's runs")
    steps_total: int


class BatchOut(BaseModel):
    id: int
    name: str | None
    created_at: dt.datetime
    template: dict[str, Any] = Field(description="The request that made the batch")
    runs: int = Field(description="How many runs it made")
    finished: bool = Field(description="Every run is in a final status")
    counts: dict[RunStatus, int] = Field(description="Its runs by status")
    progress: BatchProgress
    run_ids: list[int] = Field(description="Its runs, in matrix order")


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
