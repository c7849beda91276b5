"""The risk guard in a real session on SQLite, played by the runner's own entry
(play_run): an order over a limit is refused with its reason and recorded refused; a
run stops at its daily loss limit with the reason in its status; a replayed step gets
the answers the ledger holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from core.eventlog import EventLog
from core.eventlog.sqlite_log import SqliteEventLog
from core.exitcodes import EXIT_OK
from core.records import Order, OrderRecord, OrderState, OrderType, Run, Side, Trade
from core.risk import RiskGuard, RiskLimits
from core.status import RunStatus
from core.store import Store, open_store
from core.store.sqlite import SqliteStore
from runner.app import RunnerDeps, play_run
from runner.broker import StepOrders
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.trading import TradingService
from tests.factories import intraday_spec, make_run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = open_store(sqlite_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_log(sqlite_url: str) -> Iterator[EventLog]:
    log = SqliteEventLog(SqliteStore(sqlite_url.removeprefix("sqlite:///")))
    yield log
    log.close()


def play(store: Store, event_log: EventLog, **risk: Any) -> Run:
    spec = intraday_spec(decider="buy_and_hold", risk=RiskLimits.model_validate(risk))
    run = make_run(store, spec)
    deps = RunnerDeps(store=store, event_log=event_log, settings=RunnerSettings(),
                      stop=StopSignal())
    assert play_run(run.id, deps) == EXIT_OK
    return store.get_run(run.id)


def test_an_order_over_the_notional_limit_is_refused_with_its_reason(
        sqlite_store: Store, sqlite_log: EventLog) -> None:
    done = play(sqlite_store, sqlite_log, max_order_notional="10000")
    # Buy-and-hold asks for all its cash at every step; the guard refuses each one.
    assert done.status is RunStatus.COMPLETED, done
    assert done.spec.risk == RiskLimits(max_order_notional=Decimal(10000))
    refused = sqlite_store.list_orders(done.id, state=OrderState.REFUSED, limit=5)
    assert refused, "the guard refused nothing"
    first = refused[0]
    assert first.step == 0 and first.reason is not None
    assert first.reason.startswith("risk limit max_order_notional: order notional ")
    assert first.reason.endswith(" over the limit 10,000.00")
    assert not sqlite_store.list_orders(done.id, state=OrderState.FILLED)
    assert sqlite_store.get_portfolio(done.id).holdings == {}
    assert len(sqlite_store.list_orders(done.id, state=OrderState.REFUSED)) == 390


def test_a_run_stops_at_its_daily_loss_limit_with_the_reason(
        sqlite_store: Store, sqlite_log: EventLog) -> None:
    done = play(sqlite_store, sqlite_log, max_daily_loss="1")
    assert done.status is RunStatus.STOPPED, done
    assert done.status_reason is not None
    assert done.status_reason.startswith("risk limit max_daily_loss: daily loss "), done
    assert "over the limit 1.00 (the day began at 100,000.00" in done.status_reason
    assert 0 < done.steps_done < 390
    assert (done.result or {})["ending"] == "stopped"
    # Orders under the limits went through: it bought and held until the stop.
    assert sqlite_store.list_orders(done.id, state=OrderState.FILLED)


def test_a_replayed_step_answers_what_the_ledger_holds(sqlite_store: Store) -> None:
    """A step played again (a new runner, a fresh guard) gets the same answers at the
    same keys: the guard's refusal stands even where the new guard would let the order
    through, and an order sent then is not refused now."""
    run = make_run(sqlite_store, intraday_spec())
    trading = TradingService(sqlite_store)
    at = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)

    def orders(**risk: Any) -> StepOrders:
        return StepOrders(trading, run.id, 0, {"AAPL": Decimal(100)}, at, at,
                          symbols=["AAPL"], risk=RiskGuard(RiskLimits.model_validate(risk)))

    big, small = Order(Side.BUY, "AAPL", Decimal(200)), Order(Side.BUY, "AAPL", Decimal(10))
    limit = Order(Side.BUY, "AAPL", Decimal(50), OrderType.LIMIT, limit_price=Decimal(300))
    first = orders(max_order_notional="10000")
    refused, filled, resting = (first.place(o) for o in (big, small, limit))
    assert isinstance(refused, OrderRecord) and refused.state is OrderState.REFUSED
    assert refused.reason == ("risk limit max_order_notional: order notional 20,000.00 "
                              "over the limit 10,000.00")
    assert isinstance(filled, Trade) and filled.filled
    # A resting order is valued at its limit price: 50 x 300.
    assert isinstance(resting, OrderRecord) and resting.state is OrderState.REFUSED
    assert resting.reason is not None and "order notional 15,000.00" in resting.reason

    again = orders(max_order_notional="1")  # stricter: it would refuse the small one
    assert again.place(big) == refused
    replayed = again.place(small)
    assert isinstance(replayed, Trade) and replayed.id == filled.id and replayed.filled
    assert again.place(limit) == resting
    assert again.seq == first.seq == 3
    assert sqlite_store.get_portfolio(run.id).held("AAPL") == Decimal(10)
    # Getting out is never refused, even over every limit.
    out = again.place(Order(Side.SELL, "AAPL", Decimal(10)))
    assert isinstance(out, Trade) and out.filled
