"""Bodies of /v1/batches: a matrix of runs (models x symbols x dates or ranges), its
state as one, and the runs compared side by side."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import JsonDate, StorableBody
from core.spec import DataSource, DeciderKind, FillRule, JsonObject, Mode, RunSpec, Symbol
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
    """One run of the matrix, before it is validated as a run spec."""

    model_id: int
    symbol: str
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def label(self) -> str:
        when = self.date or f"{self.start}..{self.end}"
        return f"model {self.model_id} {self.symbol} {when}"


class BatchCreate(StorableBody, RunOptions):
    """Runs of every model on every symbol (one symbol a run) on every date (intraday
    sessions) or range (daily backtests), with the same options."""

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
            raise ValueError(f"the batch would make {size} runs; at most {MAX_BATCH_RUNS}")
        return self

    @property
    def mode(self) -> Mode:
        return Mode.INTRADAY if self.dates is not None else Mode.DAILY

    @property
    def size(self) -> int:
        return len(self.model_ids) * len(self.symbols) * len(self.dates or self.ranges or [])

    def cells(self) -> list[Cell]:
        """The matrix in order: model, then symbol, then date or range."""
        spans: list[dict[str, dt.date]] = (
            [{"date": d} for d in self.dates] if self.dates is not None
            else [{"start": r.start, "end": r.end} for r in self.ranges or []])
        return [Cell(model_id=m, symbol=s, **span) for m in self.model_ids
                for s in self.symbols for span in spans]

    def spec_of(self, cell: Cell) -> RunSpec:
        """The cell's run spec; a ValidationError when it is not one."""
        return RunSpec.model_validate({
            "mode": self.mode, "symbols": [cell.symbol], "date": cell.date,
            "start": cell.start, "end": cell.end,
            **{k: getattr(self, k) for k in OPTIONS}})


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


class CompareRow(BaseModel):
    rank: int = Field(description="1 is the best return; runs without a result come last")
    run_id: int
    model_id: int
    model: str = Field(description="The model's signature")
    symbol: str
    session: str = Field(description="The date (intraday) or start..end (daily)")
    status: RunStatus
    return_pct: float | None
    max_drawdown_pct: float | None
    sharpe: float | None
    trades: int | None
    win_rate: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost: Decimal | None = Field(description="US dollars of LLM cost known")
    benchmark_return_pct: float | None = Field(
        description="Buy-and-hold of the same symbol over the same steps")
    excess_return_pct: float | None = Field(description="return_pct - benchmark_return_pct")
    lookahead: str | None = Field(
        default=None, description="What the agent's tools could know: clean, 'N items' "
                                  "answered before they were known, or possible (an outside "
                                  "tool not point-in-time); null until the run has a result")


class ModelSummary(BaseModel):
    model_id: int
    model: str
    runs: int
    with_result: int = Field(description="Runs that have a result (the means are of these)")
    mean_return_pct: float | None
    mean_excess_return_pct: float | None = Field(
        description="Mean over the runs with a benchmark")
    total_cost: Decimal
    tokens_in: int
    tokens_out: int
    lookahead_runs: int = Field(
        default=0, description="Runs whose look-ahead is not clean: their means may use "
                               "the future")


class CompareOut(BaseModel):
    batch_id: int
    name: str | None
    rows: list[CompareRow] = Field(description="One per run, ranked by return_pct")
    models: list[ModelSummary] = Field(description="Per model, by mean return")
