"""A live run on a paper account whose runner is SIGKILLed with an order in flight:
the next `python -m runner` finds the order by its client id and books its fill once,
sends nothing late, records the minutes it missed and completes at the close.

Real processes on PostgreSQL and Redis, a local Alpaca market-data stream and paper
trading server; the clock runs 60 times as fast (a minute a second), shared by the
runners (TICKRUN_RUNNER_LIVE_CLOCK) and the test's bar driver.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.records import TradeStatus
from core.status import RunStatus
from core.store import Store
from runner.live.clock import LiveClock
from tests.factories import make_run
from tests.fakes.alpaca_stream import FakeAlpacaStream
from tests.fakes.alpaca_trading import FakeAlpacaTrading
from tests.integration.test_live_paper import (
    DATA_KEY,
    DATA_SECRET,
    PAPER_KEY,
    PAPER_SECRET,
    SLIP,
    Market,
    _wait,
    paper_spec,
)
from tests.integration.test_live_runs import OPEN, SYMBOLS, Driver, before, price
from tests.integration.test_runner_process import start_runner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

JOIN = 200  # of the half day's 210 minutes
SPEED = 60.0


@pytest.fixture
def data() -> Iterator[FakeAlpacaStream]:
    with FakeAlpacaStream(DATA_KEY, DATA_SECRET, feeds=("iex",)) as fake:
        yield fake


@pytest.fixture
def account() -> Iterator[FakeAlpacaTrading]:
    with FakeAlpacaTrading(PAPER_KEY, PAPER_SECRET,
                           prices={s: price(s, JOIN).close for s in SYMBOLS}) as fake:
        yield fake


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_runner_killed_with_an_order_in_flight_books_its_fill_once(
        store: Store, runner_env: dict[str, str], data: FakeAlpacaStream,
        account: FakeAlpacaTrading, tmp_path: Path) -> None:
    log_file = tmp_path / "first-runner.log"
    # The clock reads the join minute 6 s from now: time for the runner to start.
    clock = LiveClock(OPEN + dt.timedelta(minutes=JOIN), time.time() + 6, SPEED)
    env = {**runner_env, "TICKRUN_RUNNER_LIVE_CLOCK": str(clock),
           "TICKRUN_ALPACA_API_KEY_ID": DATA_KEY, "TICKRUN_ALPACA_API_SECRET_KEY": DATA_SECRET,
           "TICKRUN_ALPACA_STREAM_URL": data.url("iex"),
           "TICKRUN_BROKER_ALPACA_KEY_ID": PAPER_KEY,
           "TICKRUN_BROKER_ALPACA_SECRET_KEY": PAPER_SECRET,
           "TICKRUN_BROKER_ALPACA_URL": account.url,
           "TICKRUN_BROKER_ALPACA_STREAM_URL": account.stream_url,
           "TICKRUN_BROKER_FILL_WAIT_SECONDS": "30"}
    # The default deadline, 45 s: the replacement runner comes minutes late.
    run = make_run(store, paper_spec("buy_and_hold", decision_deadline_seconds=45))
    in_flight = f"tr-{run.id}-{JOIN}-0"

    def rule(order: dict[str, Any], n: int) -> str:
        return "leave" if order["client_order_id"] == in_flight else "fill"

    with Market(account, rule), Driver(data.send_minute, clock, gaps=before(JOIN)):
        # Its output to a file: a pipe nobody reads would block it once full.
        first = subprocess.Popen([sys.executable, "-m", "runner", "--run-id", str(run.id)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=log_file.open("w"))
        try:
            _wait(lambda: account.order_count(in_flight) == 1, "the order in flight", 60)
        except TimeoutError:
            first.kill()
            raise AssertionError(f"no order in flight; the runner said: "
                                 f"{log_file.read_text()[-3000:]}") from None
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The broker fills it while no runner is there.
        account.fill(in_flight, price=price("AAPL", JOIN).close + SLIP)
        # The replacement comes three minutes later (a pod rescheduled elsewhere).
        _wait(lambda: clock() > OPEN + dt.timedelta(minutes=JOIN + 3), "three minutes")
        again = start_runner(run.id, env)
        _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 2, done
    assert account.order_count(in_flight) == 1
    trades = {(t.step, t.seq): t for t in store.list_trades(run.id)}
    aapl = trades[(JOIN, 0)]
    assert aapl.status is TradeStatus.FILLED
    assert (aapl.price, aapl.rule_price) == (price("AAPL", JOIN).close + SLIP,
                                             price("AAPL", JOIN).close)
    # MSFT's order had not gone out when the runner was lost: never sent late.
    msft = trades[(JOIN, 1)]
    assert msft.status is TradeStatus.REFUSED and msft.reason is not None
    assert msft.reason.startswith("missed: ") and msft.reason.endswith(
        ": not sent (the runner that decided it was lost before sending it)")
    assert account.order_count(f"tr-{run.id}-{JOIN}-1") == 0
    # The minutes no runner was there for are recorded missed; the ledger agrees with
    # the account.
    decisions = store.list_decisions(run.id, limit=1000)
    assert [d.step for d in decisions] == list(range(210))
    missed = {d.step for d in decisions if d.outcome == "missed"}
    assert set(range(JOIN)) | {JOIN + 1, JOIN + 2} <= missed < set(range(209))
    assert store.get_portfolio(run.id).holdings == {"AAPL": aapl.quantity}
    assert account.positions["AAPL"][0] == aapl.quantity and "MSFT" not in account.positions
    assert "reconcile: the ledger holds nothing, the account " in stderr
    assert Decimal((done.result or {})["live"]["slippage"]["cost"]) == SLIP * aapl.quantity
