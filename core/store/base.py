"""The Store interface every layer programs against.

The runner, the reconciler and the API see only this; PostgreSQL (the system of record)
and SQLite (the embedded default) implement it with the same semantics, and every
store test runs on both.
"""

from __future__ import annotations

import datetime as dt
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.records import (
    Batch,
    Decision,
    FireOutcome,
    Model,
    Order,
    OrderEvent,
    OrderOrigin,
    OrderRecord,
    OrderState,
    Portfolio,
    PositionRecord,
    Run,
    Schedule,
    ScheduleFire,
    Side,
    Trade,
    TradeStatus,
)
from core.spec import RunSpec
from core.spend import DailyLimit, Spend, UsageRow
from core.status import RunStatus


@dataclass(frozen=True, slots=True)
class RunFilter:
    status: RunStatus | None = None
    symbol: str | None = None
    model_id: int | None = None
    mode: str | None = None
    before_id: int | None = None
    limit: int = 50
    batch_id: int | None = None
    schedule_id: int | None = None


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One cell of a batch's matrix: a run to queue."""

    model_id: int
    spec: RunSpec
    steps_total: int


@dataclass(frozen=True, slots=True)
class PriceBar:
    symbol: str
    interval: str
    bar_time: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    source: str = "table"  # "table" (loaded by an operator), "polygon", "alpaca"


@dataclass(frozen=True, slots=True)
class CachedSeries:
    """What the bar cache holds for one source, symbol and interval."""

    source: str
    symbol: str
    interval: str
    first_day: dt.date
    last_day: dt.date
    days: int
    bars: int
    fetched_at: dt.datetime


class LedgerTx(ABC):
    """One transaction on a run's ledger: the run's portfolio row is locked for its whole
    life, so the run's trades, orders and their events are written one transaction at a
    time, and a write of a superseded attempt is refused (Superseded) before it starts.

    Order writes do not write their events: `add_order_events` does, in the same
    transaction, one round trip for all of a change's events."""

    portfolio: Portfolio
    # The last step whose bar the resting orders and the margin were settled on (-1:
    # none yet): a step played again after a crash settles its bar once.
    bars_done: int

    @abstractmethod
    def find_trade(self, step: int, seq: int) -> Trade | None: ...

    @abstractmethod
    def insert_trade(
        self,
        *,
        step: int,
        seq: int,
        bar_time: dt.datetime,
        filled_at: dt.datetime | None,
        side: Side,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        fees: Decimal,
        status: TradeStatus,
        reason: str | None,
        cash_after: Decimal,
        reasoning: str | None,
        order_id: int | None = None,
    ) -> Trade: ...

    @abstractmethod
    def save_portfolio(self, portfolio: Portfolio) -> None: ...

    @abstractmethod
    def insert_position(self, position: PositionRecord) -> None: ...

    # -- orders ----------------------------------------------------------------------
    @abstractmethod
    def find_order(self, step: int, seq: int) -> OrderRecord | None:
        """The order keyed (run, step, seq), if it was placed."""

    @abstractmethod
    def get_order(self, order_id: int) -> OrderRecord | None:
        """The run's order of that id; None for none (or another run's)."""

    @abstractmethod
    def open_orders(self) -> list[OrderRecord]:
        """The run's open orders, in placement (id) order."""

    @abstractmethod
    def step_orders(self, step: int) -> list[OrderRecord]:
        """Every order decided at `step` (the decider's and the engine's), by seq."""

    @abstractmethod
    def insert_order(
        self,
        *,
        step: int,
        seq: int,
        bar_time: dt.datetime,
        active_from: int,
        order: Order,
        origin: OrderOrigin,
        state: OrderState,
        parent_id: int | None = None,
        reason: str | None = None,
        filled_at: dt.datetime | None = None,
        fill_price: Decimal | None = None,
        reasoning: str | None = None,
    ) -> OrderRecord: ...

    @abstractmethod
    def update_order(
        self,
        order_id: int,
        *,
        state: OrderState | None = None,
        reason: str | None = None,
        triggered_at: dt.datetime | None = None,
        filled_at: dt.datetime | None = None,
        fill_price: Decimal | None = None,
    ) -> OrderRecord | None:
        """Change an open order (its state, its trigger); None, changing nothing, when
        it is not open (a replay finds it done). Fields left None stay as they are; the
        record returned has no trade_id (the caller knows the trade it wrote)."""

    @abstractmethod
    def add_order_events(self, events: Sequence[OrderEvent]) -> None: ...

    @abstractmethod
    def mark_bars_done(self, step: int) -> None:
        """The bar of `step` is settled (see bars_done)."""


class Store(ABC):
    # -- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the database cannot answer."""

    @abstractmethod
    def close(self) -> None: ...

    # -- the controller's wake-up ----------------------------------------------------
    @abstractmethod
    def tell_controller(self, run_ids: Sequence[int]) -> None:
        """Tell the controllers at once that these runs need them (their workloads could
        not be made)."""

    @abstractmethod
    def listen_for_controller(self, stop: threading.Event, wake: Callable[[], None]) -> None:
        """Call `wake` for every message `tell_controller` sends, until `stop` (blocks)."""

    # -- models ----------------------------------------------------------------------
    @abstractmethod
    def create_model(
        self,
        user_id: str,
        signature: str,
        *,
        llm: str | None = None,
        custom_rules: str | None = None,
        custom_instructions: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Model: ...

    @abstractmethod
    def get_model(self, model_id: int, user_id: str | None = None) -> Model:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_models(self, user_id: str, *, after_id: int | None = None,
                    limit: int = 50) -> list[Model]: ...

    @abstractmethod
    def update_model(self, model_id: int, user_id: str, changes: dict[str, Any]) -> Model: ...

    @abstractmethod
    def delete_model(self, model_id: int, user_id: str) -> None: ...

    # -- runs ------------------------------------------------------------------------
    @abstractmethod
    def create_run(
        self,
        user_id: str,
        model_id: int,
        spec: RunSpec,
        steps_total: int,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> tuple[Run, bool]:
        """Insert a queued run and its portfolio; (run, created).

        The same idempotency key with the same request hash returns the first run;
        with another hash it is a Conflict.
        """

    @abstractmethod
    def get_run(self, run_id: int, user_id: str | None = None) -> Run: ...

    @abstractmethod
    def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]: ...

    @abstractmethod
    def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]: ...

    @abstractmethod
    def run_statuses(self, run_ids: Collection[int]) -> dict[int, RunStatus]:
        """The status of each run that exists, in one query (absent ids: no such run)."""

    @abstractmethod
    def count_runs_by_status(self) -> dict[RunStatus, int]:
        """Every user's runs, counted by status (metrics)."""

    @abstractmethod
    def transition(
        self,
        run_id: int,
        target: RunStatus,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Run:
        """Move a run to `target` if the state machine allows it (IllegalTransition).

        `attempt` fences a runner's writes (here and in ledger_tx, record_decision and
        complete_step): when the run's attempts moved past it, a newer runner owns the
        run and the write is refused with Superseded, changing nothing."""

    @abstractmethod
    def start_attempt(self, run_id: int, *, decider: str | None = None,
                      decider_reason: str | None = None) -> Run:
        """The runner takes the run: running, attempts + 1, started_at kept from the first;
        with `decider`, the decider it resolved and why (None: the one the model names)."""

    @abstractmethod
    def admit_queued(self, per_user_limit: int, global_limit: int, *,
                     skip: Collection[int] = (), spend: DailyLimit | None = None
                     ) -> list[Run]:
        """Admit queued runs oldest first within the limits, in one transaction; runs in
        `skip` (no workload yet) wait without holding up those behind them. With `spend`,
        a user whose LLM spend on its day reached their daily limit (their own, else its
        default) has their queued runs wait, each saying why in its status reason."""

    @abstractmethod
    def count_held_for_spend(self) -> int:
        """Queued runs waiting because their user reached the daily spend limit."""

    @abstractmethod
    def note_status(self, run_id: int, status: RunStatus, reason: str | None) -> None:
        """Say what a run in `status` is doing or waiting for (a quota's refusal, data
        being fetched), visible in the run; a run no longer in `status` is left as it
        is."""

    @abstractmethod
    def delete_run(self, run_id: int, user_id: str | None = None) -> None: ...

    # -- batches ---------------------------------------------------------------------
    @abstractmethod
    def create_batch(self, user_id: str, name: str | None, template: dict[str, Any],
                     runs: Sequence[BatchRun], *, idempotency_key: str | None = None,
                     request_hash: str | None = None) -> tuple[Batch, list[Run], bool]:
        """The batch and all its queued runs (with portfolios) in one transaction;
        (batch, runs in matrix order, created). An idempotency key seen before returns
        the first batch and its runs (a Conflict when the request hash differs)."""

    @abstractmethod
    def get_batch(self, batch_id: int, user_id: str | None = None) -> Batch:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_batches(self, user_id: str, *, before_id: int | None = None,
                     limit: int = 50) -> list[Batch]:
        """The user's batches, newest first."""

    # -- schedules -------------------------------------------------------------------
    @abstractmethod
    def create_schedule(self, user_id: str, model_id: int, name: str | None, cron: str,
                        template: dict[str, Any], make_up_seconds: int) -> Schedule:
        """An active schedule whose first due time is after now (NotFound: no such
        model of the user's)."""

    @abstractmethod
    def get_schedule(self, schedule_id: int, user_id: str | None = None) -> Schedule:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_schedules(self, user_id: str | None, *, before_id: int | None = None,
                       limit: int = 50, active_only: bool = False) -> list[Schedule]:
        """The user's schedules (None: everyone's, for the controller), newest first."""

    @abstractmethod
    def pause_schedule(self, schedule_id: int, user_id: str, paused: bool) -> Schedule:
        """Pause, or resume: a resumed schedule fires from now on; the due times it
        passed while paused are not made up."""

    @abstractmethod
    def delete_schedule(self, schedule_id: int, user_id: str) -> None:
        """The schedule and its fire records; its runs stay, without it."""

    @abstractmethod
    def fire_schedule(self, schedule_id: int, due_at: dt.datetime, outcome: FireOutcome, *,
                      run: BatchRun | None = None, reason: str | None = None
                      ) -> tuple[ScheduleFire, Run | None] | None:
        """Record what came of one due time, with its run (queued, in the same
        transaction) when `run` is given, and move the schedule past it. None when the
        due time was recorded already (another replica or an earlier pass got there
        first), or the schedule is paused or gone: a due time fires once at most."""

    @abstractmethod
    def list_fires(self, schedule_id: int, *, limit: int = 20) -> list[ScheduleFire]:
        """The schedule's recorded due times, newest first."""

    # -- ledger ----------------------------------------------------------------------
    @abstractmethod
    def ledger_tx(self, run_id: int, *,
                  attempt: int | None = None) -> AbstractContextManager[LedgerTx]: ...

    @abstractmethod
    def get_portfolio(self, run_id: int) -> Portfolio: ...

    @abstractmethod
    def list_trades(self, run_id: int, *, after_id: int = 0, limit: int = 1000,
                    status: TradeStatus | None = None) -> list[Trade]:
        """A keyset page, oldest first: trades with id > after_id (of `status` only, if
        given: filtered before the limit), at most `limit`."""

    @abstractmethod
    def recent_trades(self, run_id: int, limit: int) -> list[Trade]:
        """The run's newest `limit` trades, newest first: one read of at most `limit`
        rows however long the run is."""

    @abstractmethod
    def step_trades(self, run_id: int, step: int) -> list[Trade]:
        """The trades of one step, in seq order."""

    def iter_trades(self, run_id: int, *, page: int = 1000) -> Iterator[Trade]:
        """Every trade of the run, oldest first, read one keyset page at a time so that
        a whole-ledger pass (the final result) never holds the ledger in memory."""
        after_id = 0
        while batch := self.list_trades(run_id, after_id=after_id, limit=page):
            yield from batch
            after_id = batch[-1].id

    @abstractmethod
    def list_positions(self, run_id: int, *, limit: int = 1000) -> list[PositionRecord]:
        """The portfolio after each filled trade, in the order the ledger applied them."""

    # -- orders ----------------------------------------------------------------------
    @abstractmethod
    def list_orders(self, run_id: int, *, state: OrderState | None = None,
                    after_id: int = 0, limit: int = 1000,
                    ids: Collection[int] | None = None) -> list[OrderRecord]:
        """A keyset page of the run's orders, oldest first: ids > after_id, of `state`
        only if given (filtered before the limit), of `ids` only if given."""

    def open_orders(self, run_id: int, *, limit: int = 1000) -> list[OrderRecord]:
        """The run's open orders (its book), oldest first."""
        return self.list_orders(run_id, state=OrderState.OPEN, limit=limit)

    @abstractmethod
    def step_orders(self, run_id: int, step: int) -> list[OrderRecord]:
        """The orders the decider made at `step` (its own, not the engine's), in seq
        order."""

    @abstractmethod
    def list_order_events(self, run_id: int, *, order_id: int | None = None,
                          step: int | None = None, after_id: int = 0,
                          limit: int = 1000) -> list[OrderEvent]:
        """A keyset page of the run's order state changes, oldest first; of one order,
        or of the changes made while one step was played, if given."""

    @abstractmethod
    def count_orders(self, run_id: int) -> dict[OrderState, int]:
        """The run's orders counted by state (states with none are absent)."""

    @abstractmethod
    def list_decisions(self, run_id: int, *, after_step: int = -1,
                       limit: int = 1000) -> list[Decision]: ...

    def iter_decisions(self, run_id: int, *, page: int = 1000) -> Iterator[Decision]:
        """Every decision of the run in step order, one keyset page at a time."""
        after_step = -1
        while batch := self.list_decisions(run_id, after_step=after_step, limit=page):
            yield from batch
            after_step = batch[-1].step

    @abstractmethod
    def get_decision(self, run_id: int, step: int) -> Decision | None: ...

    @abstractmethod
    def record_decision(self, decision: Decision, *, attempt: int | None = None) -> Decision:
        """Insert the decision of a step; if one exists (a replayed step) return it. A
        decision recorded `completed` (a step that trades nothing) is its step's
        checkpoint too: steps_done moves in the same transaction."""

    @abstractmethod
    def complete_step(self, run_id: int, step: int, *, equity: Decimal, cash: Decimal,
                      attempt: int | None = None) -> None:
        """Checkpoint: the step's decision is complete and steps_done = step + 1."""

    # -- retention -------------------------------------------------------------------
    @abstractmethod
    def prunable_runs(self, finished_before: dt.datetime, *,
                      after: tuple[dt.datetime, int] | None = None,
                      limit: int = 100) -> list[Run]:
        """Final runs (completed, failed, stopped) that finished before `finished_before`,
        oldest first by (finished_at, id), a keyset page after `after`. A run that is not
        final, or has no finished_at, is never among them."""

    @abstractmethod
    def delete_finished_run(self, run_id: int, *, finished_before: dt.datetime,
                            expect_rows: Mapping[str, int] | None = None) -> bool:
        """Delete a final run that finished before `finished_before` and everything of it
        (decisions, trades, positions, portfolio) in one transaction. The run is locked
        and checked again inside it: False, and nothing deleted, when it is gone, not
        final, not that old, or when a table of `expect_rows` (decisions, trades,
        positions) holds another number of its rows than the caller archived."""

    # -- LLM spend -------------------------------------------------------------------
    @abstractmethod
    def run_spend(self, run_id: int) -> Spend:
        """What the run's recorded decisions consumed."""

    @abstractmethod
    def spend_by_user(self, user_ids: Collection[str], since: dt.datetime,
                      until: dt.datetime) -> dict[str, Decimal]:
        """Dollars of LLM cost decided in [since, until), per user (absent: nothing)."""

    @abstractmethod
    def usage(self, user_id: str, since: dt.datetime, until: dt.datetime) -> list[UsageRow]:
        """The user's spend per UTC day and model in [since, until), newest day first."""

    @abstractmethod
    def daily_limits(self, user_ids: Collection[str]) -> dict[str, Decimal | None]:
        """Operators' per-user daily limits (a user without a row has the default; a row
        with None has no limit)."""

    @abstractmethod
    def set_daily_limit(self, user_id: str, daily_cost_usd: Decimal | None, *,
                        by: str) -> None: ...

    @abstractmethod
    def clear_daily_limit(self, user_id: str) -> bool:
        """Back to the default; False when the user had no limit of their own."""

    # -- market data -----------------------------------------------------------------
    @abstractmethod
    def save_prices(self, bars: Sequence[PriceBar]) -> int: ...

    @abstractmethod
    def load_prices(self, symbol: str, interval: str, start: dt.datetime,
                    end: dt.datetime, *, source: str = "table") -> Iterator[PriceBar]: ...

    @abstractmethod
    def cache_days(self, source: str, symbol: str, interval: str,
                   days: Mapping[dt.date, Sequence[PriceBar]]) -> int:
        """Store fetched session days and mark them cached, in one transaction; a day
        already cached (another runner fetched it first) is left as it is. Returns the
        number of days this call cached."""

    @abstractmethod
    def cached_days(self, source: str, symbol: str, interval: str, first: dt.date,
                    last: dt.date) -> set[dt.date]:
        """The days from first to last (inclusive) whose bars are cached."""

    @abstractmethod
    def cache_summary(self, *, source: str | None = None,
                      symbol: str | None = None) -> list[CachedSeries]:
        """What the cache holds, one row per source, symbol and interval."""
