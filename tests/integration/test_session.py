"""The session loop in process: no look-ahead, fill rules, abandoning a slow decision."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest

from core.bars import Bar
from core.eventlog import EventLog, EventType
from core.records import Order, Side, TradeStatus
from core.spec import FillRule
from core.store import Store
from core.store.sql import Cursor, SqlStore
from runner.deciders import DecisionResult, StepContext
from runner.events import EventPublisher
from runner.marketdata import market_data_for, timeline_for
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import daily_spec, intraday_spec, make_run, run_status


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
    run = run_status(store).start_attempt(run.id)
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
        fill_bar = bars[t.step + 1] if fill is FillRule.NEXT_OPEN else bars[t.step]
        expected = fill_bar.open if fill is FillRule.NEXT_OPEN else fill_bar.close
        assert t.price == expected
        assert t.bar_time == bars[t.step].time and t.filled_at == fill_bar.time
    # No next bar after the last step: it fills at its own close, at its own time.
    assert trades[-1].price == bars[-1].close and trades[-1].filled_at == bars[-1].time


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
    session.play_step(0)
    decision = store.get_decision(session.run.id, 0)
    assert decision is not None and decision.action == "hold" and decision.outcome == "timeout"
    session.close()


# -- fill time: the decision bar and the bar whose price a trade got ----------------------
def day(d: int) -> dt.datetime:
    return dt.datetime(2004, 12, d, tzinfo=dt.UTC)


def bar(d: int, open_: int, close: int) -> Bar:
    return Bar(day(d), Decimal(open_), Decimal(close + 1), Decimal(open_ - 1), Decimal(close),
               Decimal(1000))


# Five sessions, Wed 2004-12-01 to Tue 2004-12-07 (the weekend has no bar): every open
# and close differ, so each price names the one bar it came from.
FIXED_BARS = [bar(1, 100, 101), bar(2, 102, 103), bar(3, 104, 105), bar(6, 110, 111),
              bar(7, 112, 113)]


class ScriptedDecider:
    """Sends the orders written for a step, nothing at the others."""

    name = "scripted"
    blocking = False

    def __init__(self, script: dict[int, list[Order]]) -> None:
        self.script = script

    def decide(self, ctx: StepContext) -> DecisionResult:
        orders = self.script.get(ctx.step, [])
        if not orders:
            return DecisionResult.hold("nothing scripted")
        return DecisionResult(action="trade", orders=orders, outcome="trade")


def fixed_bars_session(store: Store, event_log: EventLog, decider: object,
                       fill: FillRule) -> Session:
    spec = daily_spec(dt.date(2004, 12, 1), dt.date(2004, 12, 7), fill=fill)
    run = run_status(store).start_attempt(make_run(store, spec, cash=Decimal(10_000)).id)
    timeline = timeline_for(run.spec)
    assert timeline.times == [b.time for b in FIXED_BARS]
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=store.get_model(run.model_id), decider=decider,  # type: ignore[arg-type]
                   timeline=timeline, bars={"MSFT": FIXED_BARS}, stop=StopSignal(),
                   settings=RunnerSettings())


FILLED, REFUSED = TradeStatus.FILLED, TradeStatus.REFUSED


@pytest.mark.parametrize(("fill", "expected"), [
    # next_open: the order decided on Fri 12-03 fills at Mon 12-06's open (110), and the
    # trade says both; the last bar (12-07) has no next bar, so it fills at its own
    # close (113). The refusal at 12-01 was offered 12-02's open (102): no fill time.
    (FillRule.NEXT_OPEN, [(0, day(1), None, Decimal(102), REFUSED),
                          (2, day(3), day(6), Decimal(110), FILLED),
                          (4, day(7), day(7), Decimal(113), FILLED)]),
    # close: every order fills on its own decision bar, at that bar's close.
    (FillRule.CLOSE, [(0, day(1), None, Decimal(101), REFUSED),
                      (2, day(3), day(3), Decimal(105), FILLED),
                      (4, day(7), day(7), Decimal(113), FILLED)]),
])
def test_trades_carry_their_decision_bar_and_their_fill_bar(
        store: Store, event_log: EventLog, fill: FillRule,
        expected: list[tuple[int, dt.datetime, dt.datetime | None, Decimal, TradeStatus]]
) -> None:
    decider = ScriptedDecider({0: [Order(Side.BUY, "MSFT", Decimal(1000))],  # > cash
                               2: [Order(Side.BUY, "MSFT", Decimal(10))],
                               4: [Order(Side.SELL, "MSFT", Decimal(10))]})
    session = fixed_bars_session(store, event_log, decider, fill)
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id

    trades = store.list_trades(run_id)
    assert [(t.step, t.bar_time, t.filled_at, t.price, t.status) for t in trades] == expected
    buy, sell = expected[1][3], expected[2][3]
    assert store.get_portfolio(run_id).cash == Decimal(10_000) - 10 * buy + 10 * sell
    # A position's time is its fill; it keeps the decision bar too.
    assert [(p.step, p.bar_time, p.filled_at) for p in store.list_positions(run_id)] == [
        (step, decided, filled) for step, decided, filled, _, status in expected
        if status is FILLED]
    events = [e.data for e in event_log.read(run_id) if e.type is EventType.TRADE]
    assert [(e["step"], e["bar_time"], e["filled_at"], e["price"]) for e in events] == [
        (step, decided.isoformat(), None if filled is None else filled.isoformat(), str(t.price))
        for (step, decided, filled, _, _), t in zip(expected, trades, strict=True)]


# -- bounded reads: what a step reads does not grow with the run -------------------------
class Churner:
    """Three orders every step (some refused once cash runs out); notes the recent trades
    each step was shown."""

    name = "churner"
    blocking = False

    def __init__(self) -> None:
        self.shown: dict[int, list[int]] = {}

    def decide(self, ctx: StepContext) -> DecisionResult:
        self.shown[ctx.step] = [t.id for t in ctx.recent_trades]
        return DecisionResult(action="buy,sell", outcome="trade", orders=[
            Order(Side.BUY, "AAPL", Decimal(2)), Order(Side.BUY, "AAPL", Decimal(1)),
            Order(Side.SELL, "AAPL", Decimal(1))])


class CountingCursor:
    """Passes queries through and notes each one's SQL and the rows it returned."""

    def __init__(self, cur: Cursor, reads: list[tuple[str, int]]) -> None:
        self._cur = cur
        self._reads = reads

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = self._cur.all(sql, params)
        self._reads.append((sql, len(rows)))
        return rows

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._cur.one(sql, params)
        self._reads.append((sql, int(row is not None)))
        return row

    def one_each(self, statements: Sequence[tuple[str, Sequence[Any]]]
                 ) -> list[dict[str, Any] | None]:
        rows = self._cur.one_each(statements)
        self._reads += [(sql, int(row is not None))
                        for (sql, _), row in zip(statements, rows, strict=True)]
        return rows

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._cur.run(sql, params)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.many(sql, rows)

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cur.later(sql, params)


def count_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    reads: list[tuple[str, int]] = []
    assert isinstance(store, SqlStore)
    transaction = store._tx

    @contextmanager
    def counted(write: bool = False, batch: bool = False) -> Iterator[CountingCursor]:
        with transaction(write, batch) as cur:
            yield CountingCursor(cur, reads)

    statement = store._one_statement

    @contextmanager
    def counted_statement(write: bool = True) -> Iterator[CountingCursor]:
        with statement(write) as cur:
            yield CountingCursor(cur, reads)

    monkeypatch.setattr(store, "_tx", counted)
    monkeypatch.setattr(store, "_one_statement", counted_statement)
    return reads


def test_a_step_reads_the_same_at_its_thousandth_trade_as_at_its_first(
        store: Store, event_log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    churner = Churner()
    session = session_for(store, event_log, churner, recent_trades=5)
    reads = count_reads(store, monkeypatch)
    rows_per_step: list[int] = []
    for step in range(len(session.timeline)):
        reads.clear()
        session.play_step(step)
        rows_per_step.append(sum(n for _, n in reads))
        for sql, rows in reads:
            assert rows <= 5, (step, sql, rows)  # no query returns more than the window
            if "FROM trades" in sql:  # every read of the ledger is bounded in SQL
                assert "LIMIT" in sql or "step = %s" in sql, sql

    trades = list(store.iter_trades(session.run.id))
    assert len(trades) == 3 * 390 > 1000
    # The rows a step reads stay flat from the first steps to the last.
    assert max(rows_per_step[-50:]) <= max(rows_per_step[5:55])
    # "Recent" stays recent past 1,000 trades: the newest five, oldest first.
    assert churner.shown[389] == [t.id for t in trades if t.step < 389][-5:]
    assert churner.shown[0] == [] and churner.shown[1] == [t.id for t in trades[:3]]
