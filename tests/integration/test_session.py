"""The session loop in process: no look-ahead, fill rules, abandoning a slow decision."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from core.eventlog import EventLog
from core.records import Order, Side
from core.spec import FillRule
from core.store import Store
from runner.deciders import DecisionResult, StepContext
from runner.events import EventPublisher
from runner.marketdata import market_data_for, timeline_for
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import intraday_spec, make_run


class SpyDecider:
    """Buys one share every step and checks it never sees a future bar."""

    name = "spy"
    blocking = False

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def decide(self, ctx: StepContext) -> DecisionResult:
        bars = ctx.history["AAPL"]
        assert bars[-1].time == ctx.bar_time
        self.seen.append((ctx.step, len(bars)))
        return DecisionResult(action="buy", orders=[Order(Side.BUY, "AAPL", Decimal(1))],
                              outcome="trade")


class SlowDecider:
    name = "slow"
    blocking = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def decide(self, ctx: StepContext) -> DecisionResult:
        self.started.set()
        time.sleep(self.seconds)
        return DecisionResult.hold("thought hard")


def session_for(store: Store, event_log: EventLog, decider: object, *,
                fill: FillRule = FillRule.NEXT_OPEN, stop: StopSignal | None = None,
                **settings: float) -> Session:
    run = make_run(store, intraday_spec(fill=fill))
    run = store.start_attempt(run.id)
    timeline = timeline_for(run.spec)
    provider = market_data_for(run.spec, store, RunnerSettings().data_dir)
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=store.get_model(run.model_id), decider=decider,  # type: ignore[arg-type]
                   timeline=timeline, bars={"AAPL": provider.bars("AAPL", timeline)},
                   stop=stop or StopSignal(), settings=RunnerSettings(**settings))


@pytest.mark.parametrize("fill", [FillRule.NEXT_OPEN, FillRule.CLOSE])
def test_deciders_see_no_future_bar_and_fills_follow_the_rule(
        store: Store, event_log: EventLog, fill: FillRule) -> None:
    spy = SpyDecider()
    session = session_for(store, event_log, spy, fill=fill)
    assert session.play() is Ending.COMPLETED
    assert spy.seen == [(step, step + 1) for step in range(390)]
    bars = session.bars["AAPL"]
    trades = store.list_trades(session.run.id, limit=1000)
    for t in trades[:-1]:
        expected = bars[t.step + 1].open if fill is FillRule.NEXT_OPEN else bars[t.step].close
        assert t.price == expected
    assert trades[-1].price == bars[-1].close  # no next bar after the last step


def test_a_stop_abandons_a_slow_decision_within_the_bound(store: Store,
                                                          event_log: EventLog) -> None:
    stop = StopSignal()
    slow = SlowDecider(seconds=30)
    session = session_for(store, event_log, slow, stop=stop, abandon_decision_seconds=0.5)
    result: list[Ending] = []
    worker = threading.Thread(target=lambda: result.append(session.play()))
    worker.start()
    assert slow.started.wait(10)
    began = time.monotonic()
    stop.request("SIGTERM")
    worker.join(10)
    assert result == [Ending.STOPPED] and time.monotonic() - began < 3
    decision = store.get_decision(session.run.id, 0)
    assert decision is not None and decision.outcome == "timeout"
    assert "stop requested" in str(decision.reasoning)
    session.close()


def test_a_decision_over_the_timeout_is_a_hold(store: Store, event_log: EventLog) -> None:
    session = session_for(store, event_log, SlowDecider(seconds=0.5),
                          decision_timeout_seconds=0.1)
    session._play_step(0)
    decision = store.get_decision(session.run.id, 0)
    assert decision is not None and decision.action == "hold" and decision.outcome == "timeout"
    session.close()
