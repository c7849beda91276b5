"""Live runs on an Alpaca paper account: the runner's own entry (play_run) against a
local Alpaca market-data stream and a local Alpaca paper trading server (REST and its
trade-updates stream, tests/fakes/alpaca_trading.py), through alpaca-py.

The test plays the market: `Market` fills each new order of the account as a scenario
says (whole at the decision bar's close plus a slippage, in part, not at all, or
rejected). The run joins 150 minutes into a half day, on a scaled clock, so its last
60 minutes are played in seconds.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from core.eventlog import EventLog
from core.eventlog.sqlite_log import SqliteEventLog
from core.exitcodes import EXIT_OK
from core.marketdata.settings import MarketDataSettings
from core.records import Order, Run, Side, TradeStatus
from core.spec import RunSpec
from core.status import RunStatus
from core.store import Store, open_store
from core.store.sqlite import SqliteStore
from runner.app import RunnerDeps, play_run
from runner.brokers.alpaca_paper import AlpacaPaperBook, parse_client_order_id
from runner.brokers.settings import BrokerSettings
from runner.live.clock import LiveClock
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import make_run
from tests.fakes.alpaca_stream import FakeAlpacaStream
from tests.fakes.alpaca_trading import FINAL, FakeAlpacaTrading
from tests.integration.test_live_runs import (
    HALF_DAY,
    OPEN,
    SYMBOLS,
    Driver,
    before,
    close_of,
    price,
)

pytestmark = pytest.mark.timeout(120)

DATA_KEY, DATA_SECRET = "PKDATA0123456789ABCD", "data-secret-0123456789abcdef"
PAPER_KEY, PAPER_SECRET = "PKPAPER0123456789ABC", "paper-secret-0123456789abcdef"
JOIN = 150  # the minute the run joins at
SPEED = 600.0
SLIP = Decimal("0.03")

Rule = Callable[[dict[str, Any], int], str]  # an order, its index -> what the market does


class Market:
    """Handles each new order of the fake account once, by `rule`: "fill" (whole, at
    the decision bar's close + SLIP), "half" (half of it, the rest left open), "reject",
    or "leave"."""

    def __init__(self, fake: FakeAlpacaTrading, rule: Rule | None = None) -> None:
        self.fake, self.rule = fake, rule or (lambda order, n: "fill")
        self.handled: dict[str, str] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Market:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._done.wait(0.002):
            with self.fake._lock:
                new = [dict(o) for o in self.fake.orders.values()
                       if o["client_order_id"] not in self.handled and o["status"] not in FINAL]
            for order in new:
                cid = order["client_order_id"]
                what = self.rule(order, len(self.handled))
                self.handled[cid] = what
                self._apply(order, what)

    def _apply(self, order: dict[str, Any], what: str) -> None:
        cid, qty = order["client_order_id"], Decimal(order["qty"])
        parsed = parse_client_order_id(cid)
        step = parsed[1] if parsed else JOIN
        at = close_of(order["symbol"], step) + SLIP
        if what == "fill":
            self.fake.fill(cid, price=at)
        elif what == "half":
            self.fake.fill(cid, qty=(qty / 2).to_integral_value() or qty, price=at)
        elif what == "reject":
            self.fake.reject(cid)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = open_store(sqlite_url)
    yield s
    s.close()


@pytest.fixture
def event_log(sqlite_url: str) -> Iterator[EventLog]:
    log = SqliteEventLog(SqliteStore(sqlite_url.removeprefix("sqlite:///")))
    yield log
    log.close()


@pytest.fixture
def data() -> Iterator[FakeAlpacaStream]:
    with FakeAlpacaStream(DATA_KEY, DATA_SECRET, feeds=("iex",)) as fake:
        yield fake


@pytest.fixture
def account() -> Iterator[FakeAlpacaTrading]:
    prices = {s: price(s, JOIN).close for s in SYMBOLS}
    with FakeAlpacaTrading(PAPER_KEY, PAPER_SECRET, prices=prices) as fake:
        yield fake


def paper_spec(decider: str = "sma_crossover", **live: Any) -> RunSpec:
    return RunSpec.model_validate({
        "mode": "intraday", "date": HALF_DAY.isoformat(), "symbols": list(SYMBOLS),
        "data": "alpaca", "decider": decider, "decider_params": {"fast": 3, "slow": 8},
        "live": {"broker": "alpaca_paper", "decision_deadline_seconds": 600, **live}})


def deps_for(store: Store, event_log: EventLog, data: FakeAlpacaStream,
             account: FakeAlpacaTrading, clock: LiveClock) -> RunnerDeps:
    return RunnerDeps(
        store=store, event_log=event_log, stop=StopSignal(),
        settings=RunnerSettings(live_clock=str(clock)),
        market_data=MarketDataSettings(
            alpaca_api_key_id=SecretStr(DATA_KEY), alpaca_api_secret_key=SecretStr(DATA_SECRET),
            alpaca_stream_url=data.url("iex")),
        broker=BrokerSettings(alpaca_key_id=SecretStr(PAPER_KEY),
                              alpaca_secret_key=SecretStr(PAPER_SECRET), alpaca_url=account.url,
                              alpaca_stream_url=account.stream_url, fill_wait_seconds=1.0))


def joining_clock() -> LiveClock:
    return LiveClock(OPEN + JOIN * MINUTES, time.time() + 1.5, SPEED)


MINUTES = dt.timedelta(minutes=1)


def play(store: Store, event_log: EventLog, data: FakeAlpacaStream,
         account: FakeAlpacaTrading, spec: RunSpec, rule: Rule | None = None) -> Run:
    clock = joining_clock()
    run = make_run(store, spec)
    deps = deps_for(store, event_log, data, account, clock)
    with Market(account, rule), Driver(data.send_minute, clock, gaps=before(JOIN)):
        assert play_run(run.id, deps) == EXIT_OK
    return store.get_run(run.id)


def test_every_order_goes_to_the_broker_once_and_its_fill_keeps_the_rule_price(
        store: Store, event_log: EventLog, data: FakeAlpacaStream,
        account: FakeAlpacaTrading) -> None:
    done = play(store, event_log, data, account, paper_spec())
    assert done.status is RunStatus.COMPLETED, done
    trades = [t for t in store.list_trades(done.id) if t.filled]
    assert trades, "the SMA crossover traded nothing"
    for t in trades:
        rule = price(t.symbol, t.step).close
        assert (t.rule_price, t.price) == (rule, rule + SLIP), t
        cid = f"tr-{done.id}-{t.step}-{t.seq}"
        assert account.order_count(cid) == 1
        assert Decimal(account.by_client_id(cid)["filled_qty"]) == t.quantity
    assert account.order_count() == len(trades)
    signed = sum(SLIP * t.quantity * (1 if t.side.buys else -1) for t in trades)
    slippage = (done.result or {})["live"]["slippage"]
    assert slippage["fills"] == len(trades)
    assert Decimal(slippage["cost"]) == signed
    # The ledger and the account agree on what is held.
    held = store.get_portfolio(done.id).holdings
    assert {s: q for s, q in held.items() if q} == {
        s: q for s, (q, _) in account.positions.items()}


def test_a_partial_fill_books_what_filled_and_a_rejection_is_a_refusal(
        store: Store, event_log: EventLog, data: FakeAlpacaStream,
        account: FakeAlpacaTrading) -> None:
    def rule(order: dict[str, Any], n: int) -> str:
        return {0: "half", 1: "reject"}.get(n, "fill")

    done = play(store, event_log, data, account, paper_spec(), rule)
    assert done.status is RunStatus.COMPLETED, done
    trades = store.list_trades(done.id)
    first, second = trades[0], trades[1]
    asked = Decimal(account.by_client_id(f"tr-{done.id}-{first.step}-{first.seq}")["qty"])
    assert first.status is TradeStatus.FILLED and first.quantity == (asked / 2).to_integral_value()
    assert first.reason == (f"alpaca paper filled {first.quantity} of {asked.normalize()}; "
                            "the rest was canceled")
    assert account.by_client_id(f"tr-{done.id}-{first.step}-{first.seq}")["status"] == "canceled"
    assert second.status is TradeStatus.REFUSED
    assert second.reason == "alpaca paper: the order was rejected with nothing filled"


def test_the_broker_refusing_for_buying_power_is_answered_with_its_reason(
        store: Store, event_log: EventLog, data: FakeAlpacaStream,
        account: FakeAlpacaTrading) -> None:
    account.cash = Decimal(1000)  # the account has less than the run may spend
    done = play(store, event_log, data, account, paper_spec("buy_and_hold"))
    refused = store.list_trades(done.id)
    assert refused and all(t.status is TradeStatus.REFUSED for t in refused)
    reason = refused[0].reason or ""
    assert reason.startswith(f"alpaca refused order tr-{done.id}-{JOIN}-0 (buy ")
    assert reason.endswith(" AAPL): insufficient buying power")
    assert store.get_portfolio(done.id).holdings == {}


def test_a_stop_cancels_the_runs_open_orders_and_flattens_when_asked(
        store: Store, event_log: EventLog, data: FakeAlpacaStream,
        account: FakeAlpacaTrading) -> None:
    clock = joining_clock()
    run = make_run(store, paper_spec("buy_and_hold", flatten_on_stop=True))
    deps = deps_for(store, event_log, data, account, clock)
    leftover = f"tr-{run.id}-{JOIN}-7"  # an order of the run the market never fills

    def rule(order: dict[str, Any], n: int) -> str:
        return "leave" if order["client_order_id"] == leftover else "fill"

    codes: list[int] = []
    player = threading.Thread(target=lambda: codes.append(play_run(run.id, deps)))
    with Market(account, rule), Driver(data.send_minute, clock, gaps=before(JOIN)):
        player.start()
        _wait(lambda: bool(account.positions), "the run's first fills")
        with AlpacaPaperBook(SecretStr(PAPER_KEY), SecretStr(PAPER_SECRET), url=account.url,
                             stream_url=account.stream_url) as book:
            assert not isinstance(book.submit(Order(Side.BUY, "AAPL", Decimal(1)), run.id,
                                              JOIN, 7), str)
        deps.stop.request("SIGINT")
        player.join(60)
    assert codes == [EXIT_OK]
    done = store.get_run(run.id)
    assert done.status is RunStatus.STOPPED, done
    assert account.by_client_id(leftover)["status"] == "canceled"
    assert store.get_portfolio(done.id).holdings == {} and account.positions == {}
    live = (done.result or {})["live"]
    assert live["left_open"] == {"positions": {}, "broker_orders_cancelled": 1,
                                 "broker_orders_open": []}
    flat = [t for t in store.list_trades(done.id) if t.side is Side.SELL]
    assert len(flat) == 2 and all(t.rule_price is not None for t in flat)


def _wait(ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)
