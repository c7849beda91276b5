"""Orders beyond market buy and sell, through the session loop on fixed bars.

Every case is computed by hand: the bar each order fills on, its price, the cash after
it, and the margin. Each runs on PostgreSQL and on SQLite. Bars are written
(open, high, low, close); the run starts with 10,000 in cash, no fees.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from core import calendar
from core.bars import Bar
from core.eventlog import EventLog, EventType
from core.orders import FLAT_AT_CLOSE_SEQ, MARGIN_CALL_SEQ, STOP_LOSS_SEQ
from core.records import (
    Decision,
    Order,
    OrderEventKind,
    OrderOrigin,
    OrderRecord,
    OrderState,
    OrderType,
    Refusal,
    Side,
    TimeInForce,
    Trade,
    TradeStatus,
)
from core.spec import RunSpec
from core.status import RunStatus
from core.store import Store
from runner.broker import StepClosed
from runner.deciders import DecisionResult, StepContext
from runner.deciders.baselines import BuyAndHold, SmaCrossover
from runner.events import EventPublisher
from runner.marketdata import market_data_for, timeline_for
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import daily_spec, intraday_spec, make_run, run_status

D = Decimal
CASH = D(10_000)
FIRST_DAY = dt.date(2004, 12, 1)
Ohlc = tuple[float | int | str, float | int | str, float | int | str, float | int | str]
FLAT: Ohlc = (100, 101, 99, 100)


def day(step: int) -> dt.datetime:
    """The bar time of a daily step (sessions from Wed 2004-12-01)."""
    days = calendar.sessions_in_range(FIRST_DAY, FIRST_DAY + dt.timedelta(days=60))
    return dt.datetime.combine(days[step], dt.time(), dt.UTC)


def bars_at(times: list[dt.datetime], ohlc: list[Ohlc]) -> list[Bar]:
    assert len(times) == len(ohlc)
    return [Bar(t, D(str(o)), D(str(h)), D(str(lo)), D(str(c)), D(1000))
            for t, (o, h, lo, c) in zip(times, ohlc, strict=True)]


Action = Callable[[StepContext], DecisionResult | None]


class Scripted:
    """Answers what is written for a step (a DecisionResult, or a function of the
    context that may act through the broker); holds elsewhere. Notes what it saw."""

    name = "scripted"
    blocking = False

    def __init__(self, script: dict[int, DecisionResult | Action]) -> None:
        self.script = script
        self.seen: dict[int, tuple[dict[str, Decimal], Decimal, list[OrderRecord]]] = {}
        self.answers: dict[int, Any] = {}

    def decide(self, ctx: StepContext) -> DecisionResult:
        self.seen[ctx.step] = (dict(ctx.portfolio.holdings), ctx.portfolio.cash,
                               list(ctx.open_orders))
        planned = self.script.get(ctx.step)
        if callable(planned):
            planned = planned(ctx)
        return planned or DecisionResult.hold("nothing scripted")


def act(*orders: Order, cancels: list[int] | None = None,
        close_all: bool = False) -> DecisionResult:
    return DecisionResult(action="trade", orders=list(orders), outcome="trade",
                          reasoning="scripted", cancels=cancels or [], close_all=close_all)


def market(side: Side, qty: int, symbol: str = "MSFT", **kw: Any) -> Order:
    return Order(side, symbol, D(qty), **kw)


def limit(side: Side, qty: int, price: str, symbol: str = "MSFT",
          tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(side, symbol, D(qty), OrderType.LIMIT, limit_price=D(price), time_in_force=tif)


def daily_session(store: Store, event_log: EventLog, decider: object,
                  bars: dict[str, list[Ohlc]], **spec: Any) -> Session:
    steps = len(next(iter(bars.values())))
    spec_ = daily_spec(FIRST_DAY, day(steps - 1).date(), symbols=list(bars), **spec)
    run = run_status(store).start_attempt(make_run(store, spec_, cash=CASH).id)
    timeline = timeline_for(run.spec)
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=store.get_model(run.model_id), decider=decider,  # type: ignore[arg-type]
                   timeline=timeline,
                   bars={s: bars_at(timeline.times, ohlc) for s, ohlc in bars.items()},
                   stop=StopSignal(), settings=RunnerSettings())


def again(store: Store, event_log: EventLog, session: Session) -> Session:
    """A new runner for the same run (a new attempt), as after a crash."""
    run = run_status(store).start_attempt(session.run.id)
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=session.model, decider=session.decider, timeline=session.timeline,
                   bars=session.bars, stop=StopSignal(), settings=RunnerSettings())


def orders_of(store: Store, run_id: int) -> list[OrderRecord]:
    return store.list_orders(run_id)


def kinds(store: Store, order_id: int, run_id: int) -> list[tuple[str, int]]:
    return [(e.kind.value, e.step) for e in store.list_order_events(run_id, order_id=order_id)]


def equities(store: Store, run_id: int) -> list[Decimal | None]:
    return [d.equity for d in store.list_decisions(run_id)]


def ledger(store: Store, run_id: int) -> tuple[Any, ...]:
    """Everything a replay must leave as it is."""
    return (store.list_trades(run_id), store.list_orders(run_id),
            [(e.id, e.order_id, e.kind, e.step) for e in store.list_order_events(run_id)],
            store.get_portfolio(run_id), store.list_positions(run_id))


def replays_change_nothing(store: Store, session: Session) -> None:
    """Play every step of a finished run again, as a runner after a crash would: the
    ledger stays exactly as it is (no order placed, filled or ended twice)."""
    before = ledger(store, session.run.id)
    for step in range(len(session.timeline)):
        session.play_step(step, maybe_played=True)
    assert ledger(store, session.run.id) == before


# -- limit, stop, stop-limit, stop-loss -------------------------------------------------
def test_a_buy_limit_fills_on_the_first_bar_that_reaches_it_not_its_decision_bar(
        store: Store, event_log: EventLog) -> None:
    decider = Scripted({0: act(limit(Side.BUY, 10, "98"))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        (100, 101, 97, 100),  # the decision bar reaches 98: too early, it was not there
        (99, 100, 98.5, 99),  # 98.5: not reached
        (99, 99.5, 97, 98),  # reached: min(open 99, 98) = 98
        (98, 99, 97.5, 98.5),
        (99, 100, 98, 99)]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id

    [order] = orders_of(store, run_id)
    assert (order.state, order.fill_price, order.filled_at, order.active_from) == (
        OrderState.FILLED, D(98), day(2), 1)
    [trade] = store.list_trades(run_id)
    assert (trade.step, trade.seq, trade.bar_time, trade.filled_at, trade.price,
            trade.order_id, trade.cash_after) == (0, 0, day(0), day(2), D(98), order.id,
                                                  D(9020))
    assert order.trade_id == trade.id
    assert kinds(store, order.id, run_id) == [("placed", 0), ("filled", 2)]
    holdings, cash, book = decider.seen[1]  # what the decider saw the step after
    assert (holdings, cash, [(o.id, o.state) for o in book]) == (
        {}, CASH, [(order.id, OrderState.OPEN)])
    assert decider.seen[2][:2] == ({"MSFT": D(10)}, D(9020)) and decider.seen[2][2] == []
    # Equity at each close: cash + 10 x close once filled.
    assert equities(store, run_id) == [CASH, CASH, D(10_000), D(10_005), D(10_010)]
    events = event_log.read(run_id, count=1000)
    order_events = [(e.data["event"], e.data["step"], e.data["order"]["id"])
                    for e in events if e.type is EventType.ORDER]
    assert order_events == [("placed", 0, order.id), ("filled", 2, order.id)]
    fill = next(e for e in events if e.type is EventType.TRADE)
    assert fill.data["order_id"] == order.id and fill.data["filled_at"] == day(2).isoformat()
    assert (session.store.get_run(run_id).steps_done, store.open_orders(run_id)) == (5, [])
    replays_change_nothing(store, session)


def test_a_stop_loss_gapped_through_fills_at_the_open(store: Store,
                                                     event_log: EventLog) -> None:
    decider = Scripted({0: act(market(Side.BUY, 10, stop_loss=D(95)))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        FLAT,
        (100, 102, 99, 101),  # the buy fills at this open, 100; its stop rests from here
        (101, 101, 96, 97),  # 96: over the stop
        (92, 93, 90, 91),  # gaps through 95: sold at the open, 92
        (91, 92, 90, 91)]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id

    parent, child = orders_of(store, run_id)
    assert (parent.type, parent.state, parent.fill_price, parent.stop_loss) == (
        OrderType.MARKET, OrderState.FILLED, D(100), D(95))
    assert (child.origin, child.parent_id, child.side, child.type, child.stop_price,
            child.time_in_force, child.step, child.seq, child.active_from) == (
        OrderOrigin.STOP_LOSS, parent.id, Side.SELL, OrderType.STOP, D(95), TimeInForce.GTC,
        0, STOP_LOSS_SEQ, 1)
    assert (child.state, child.fill_price, child.filled_at) == (OrderState.FILLED, D(92), day(3))
    buy, sell = store.list_trades(run_id)
    assert (buy.price, buy.cash_after) == (D(100), D(9000))
    assert (sell.side, sell.price, sell.filled_at, sell.cash_after, sell.order_id) == (
        Side.SELL, D(92), day(3), D(9920), child.id)
    assert store.get_portfolio(run_id).holdings == {}
    assert kinds(store, child.id, run_id) == [("placed", 0), ("filled", 3)]
    replays_change_nothing(store, session)


def test_a_stop_limit_triggers_and_fills_within_the_bar(store: Store,
                                                       event_log: EventLog) -> None:
    order = Order(Side.BUY, "MSFT", D(10), OrderType.STOP_LIMIT, limit_price=D(103),
                  stop_price=D(102), time_in_force=TimeInForce.GTC)
    session = daily_session(store, event_log, Scripted({0: act(order)}), {"MSFT": [
        FLAT, FLAT,
        (100, 102.5, 99, 101),  # trades through 102, limit 103 beyond it: filled at 102
        FLAT]})
    assert session.play() is Ending.COMPLETED
    [placed] = orders_of(store, session.run.id)
    assert (placed.state, placed.fill_price, placed.triggered_at) == (
        OrderState.FILLED, D(102), day(2))
    assert kinds(store, placed.id, session.run.id) == [
        ("placed", 0), ("triggered", 2), ("filled", 2)]
    assert store.get_portfolio(session.run.id).cash == D(8980)


def test_a_resting_order_refused_when_it_comes_to_fill(store: Store,
                                                       event_log: EventLog) -> None:
    decider = Scripted({0: act(limit(Side.BUY, 200, "98"))})  # 19,600: more than the cash
    session = daily_session(store, event_log, decider, {"MSFT": [
        FLAT, FLAT, (99, 99.5, 97, 98), FLAT]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    [order] = orders_of(store, run_id)
    why = "insufficient cash: 200 x 98 + fees 0 = 19600 > cash 10000"
    assert (order.state, order.reason, order.fill_price) == (OrderState.REFUSED, why, None)
    [trade] = store.list_trades(run_id)
    assert (trade.status, trade.reason, trade.step, trade.filled_at, trade.order_id) == (
        TradeStatus.REFUSED, why, 0, None, order.id)
    assert kinds(store, order.id, run_id) == [("placed", 0), ("refused", 2)]
    assert store.get_portfolio(run_id).cash == CASH


# -- short sale, margin ------------------------------------------------------------------
def test_a_short_sold_and_covered(store: Store, event_log: EventLog) -> None:
    decider = Scripted({
        0: act(market(Side.SHORT, 100)),
        1: act(market(Side.BUY, 1), market(Side.SELL, 1), market(Side.SHORT, 10, "MSFT")),
        2: act(market(Side.COVER, 100))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        (50, 51, 49, 50),
        (50, 56, 49, 55),  # shorted at this open, 50: cash 15,000, MSFT -100
        (54, 55, 50, 51),  # the second short fills here, at 54
        (45, 46, 44, 45),  # covered at 45
        (45, 46, 44, 45)]}, initial_margin=D("0.5"))
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    trades = store.list_trades(run_id)
    assert [(t.side, t.status, t.price, t.cash_after) for t in trades] == [
        (Side.SHORT, TradeStatus.FILLED, D(50), D(15_000)),
        (Side.BUY, TradeStatus.REFUSED, D(54), D(15_000)),  # short: cover it, not buy
        (Side.SELL, TradeStatus.REFUSED, D(54), D(15_000)),  # nothing long to sell
        (Side.SHORT, TradeStatus.FILLED, D(54), D(15_540)),  # adds to the short
        (Side.COVER, TradeStatus.FILLED, D(45), D(11_040))]  # covers 100 of 110
    assert "held short (100): cover it" in str(trades[1].reason)
    assert "insufficient holdings" in str(trades[2].reason)
    assert store.get_portfolio(run_id).holdings == {"MSFT": D(-10)}
    # Equity = cash + holdings x close, each order booked at its decision step (its
    # next-open fill): 15,000 - 100 x 50; 15,540 - 110 x 55; 11,040 - 10 x 51;
    # 11,040 - 10 x 45, twice.
    assert equities(store, run_id) == [D(10_000), D(9490), D(10_530), D(10_590), D(10_590)]
    result = session.result(Ending.COMPLETED)
    assert result["final_equity"] == "10590.000000" and result["return_pct"] == 5.9
    assert result["max_drawdown_pct"] == 5.1  # 10,000 -> 9,490
    assert result["shorts"] == {"short_fills": 2, "cover_fills": 1, "margin_calls": 0}
    assert result["win_rate"] == 1.0  # covered 100 at 45 against an average short of ~50.5
    assert result["final_short_value"] == "450.000000"
    assert result["orders"] == {"filled": 3, "refused": 2}
    replays_change_nothing(store, session)


def test_a_short_squeeze_is_refused_by_the_initial_margin(store: Store,
                                                          event_log: EventLog) -> None:
    decider = Scripted({0: act(market(Side.SHORT, 100)), 2: act(market(Side.SHORT, 100))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        (50, 51, 49, 50),
        (50, 56, 49, 55),  # shorted 100 at 50: cash 15,000
        (70, 81, 69, 80),  # the squeeze: 80 at the close, short another 100...
        (90, 92, 88, 90),  # ... at 90: cash 24,000, short 200 x 90 = 18,000, equity 6,000
        (90, 92, 88, 90)]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    first, second = store.list_trades(run_id)
    assert first.filled and not second.filled and second.price == D(90)
    why = ("margin: shorting 100 MSFT at 90: equity after it 6000.00 < initial margin 0.5 x "
           "short value 18000.00 = 9000.00")
    assert second.reason == why
    refused = orders_of(store, run_id)[1]
    assert (refused.state, refused.reason) == (OrderState.REFUSED, why)
    assert store.get_portfolio(run_id).holdings == {"MSFT": D(-100)}
    # Maintenance (0.3) holds at every close: 9,500 >= 1,650; 7,000 >= 2,400; 6,000 >= 2,700.
    assert not [t for t in store.list_trades(run_id) if t.side is Side.COVER]


def test_a_margin_call_covers_the_shorts_at_the_close(store: Store,
                                                      event_log: EventLog) -> None:
    decider = Scripted({0: act(market(Side.SHORT, 100))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        (50, 51, 49, 50),
        (50, 56, 49, 55),  # shorted at 50: cash 15,000
        (60, 121, 59, 120),  # close 120: equity 3,000 < 0.3 x 12,000 = 3,600: covered at 120
        (118, 119, 110, 111)]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    _, cover = store.list_trades(run_id)
    assert (cover.side, cover.status, cover.quantity, cover.price, cover.cash_after) == (
        Side.COVER, TradeStatus.FILLED, D(100), D(120), D(3000))
    assert (cover.step, cover.seq, cover.bar_time, cover.filled_at) == (
        2, MARGIN_CALL_SEQ, day(2), day(2))
    assert cover.reason == ("margin call: equity 3000.00 < maintenance margin 0.3 x short "
                            "value 12000.00 = 3600.00; shorts covered at the close")
    call = orders_of(store, run_id)[1]
    assert (call.origin, call.state) == (OrderOrigin.MARGIN_CALL, OrderState.FILLED)
    assert decider.seen[2][:2] == ({}, D(3000))  # the decider saw the call's result
    assert equities(store, run_id) == [D(10_000), D(9500), D(3000), D(3000)]
    result = session.result(Ending.COMPLETED)
    assert result["shorts"]["margin_calls"] == 1 and result["return_pct"] == -70.0
    replays_change_nothing(store, session)


# -- time in force, cancel, the broker of a decider's tools ---------------------------------
def test_day_orders_live_one_session_in_a_daily_run_gtc_ones_until_filled(
        store: Store, event_log: EventLog) -> None:
    decider = Scripted({
        0: act(limit(Side.BUY, 1, "95", tif=TimeInForce.DAY), limit(Side.BUY, 1, "95")),
        4: act(limit(Side.BUY, 1, "10", tif=TimeInForce.DAY), limit(Side.BUY, 1, "10"))})
    session = daily_session(store, event_log, decider, {"MSFT": [
        FLAT,
        (100, 101, 96, 100),  # the day order's one session: 96 does not reach 95
        (99, 100, 97, 98),
        (97, 98, 94, 95),  # the GTC order fills at 95
        FLAT]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    day_order, gtc, late_day, late_gtc = orders_of(store, run_id)
    assert (day_order.state, day_order.reason) == (
        OrderState.EXPIRED, "day order: its session ended without a fill")
    assert kinds(store, day_order.id, run_id) == [("placed", 0), ("expired", 1)]
    assert (gtc.state, gtc.fill_price, gtc.filled_at) == (OrderState.FILLED, D(95), day(3))
    # Placed on the last bar: the run ends before their session.
    assert (late_day.state, late_day.reason) == (
        OrderState.EXPIRED, "the run ended before its session")
    assert (late_gtc.state, late_gtc.reason) == (OrderState.CANCELLED, "the run ended")
    assert store.get_portfolio(run_id).cash == CASH - 95
    assert session.result(Ending.COMPLETED)["orders"] == {
        "cancelled": 1, "expired": 2, "filled": 1}


def test_the_tools_broker_places_lists_and_cancels(store: Store, event_log: EventLog) -> None:
    answers: dict[str, Any] = {}

    def place(ctx: StepContext) -> None:
        answers["placed"] = ctx.broker.place(limit(Side.BUY, 10, "90"))
        answers["malformed"] = ctx.broker.place(Order(Side.BUY, "MSFT", D(1), OrderType.LIMIT))
        answers["unknown"] = ctx.broker.place(limit(Side.BUY, 1, "90", symbol="ZZZ"))
        answers["market"] = ctx.broker.place(market(Side.BUY, 1))

    def cancel(ctx: StepContext) -> None:
        answers["book"] = ctx.broker.open_orders()
        answers["seen"] = list(ctx.open_orders)
        answers["cancelled"] = ctx.broker.cancel(answers["placed"].id, "changed my mind")
        answers["twice"] = ctx.broker.cancel(answers["placed"].id)
        answers["none"] = ctx.broker.cancel(10**9)

    decider = Scripted({0: place, 1: cancel})  # type: ignore[dict-item]
    session = daily_session(store, event_log, decider, {"MSFT": [
        FLAT, FLAT, (95, 96, 85, 90), FLAT]})  # 85 would have filled it
    assert session.play() is Ending.COMPLETED
    placed = answers["placed"]
    assert isinstance(placed, OrderRecord) and placed.state is OrderState.OPEN
    assert (answers["malformed"].state, answers["malformed"].reason) == (
        OrderState.REFUSED, "a limit order needs a limit_price")
    assert answers["unknown"].reason == "ZZZ is not a symbol of this run"
    assert isinstance(answers["market"], Trade) and answers["market"].filled
    assert [o.id for o in answers["book"]] == [o.id for o in answers["seen"]] == [placed.id]
    assert answers["cancelled"].state is OrderState.CANCELLED
    assert answers["cancelled"].reason == "cancelled by the decider: changed my mind"
    assert answers["twice"] == Refusal(f"order {placed.id} is cancelled already")
    assert answers["none"] == Refusal(f"no order {10**9} in this run")
    assert [t.quantity for t in store.list_trades(session.run.id)] == [D(1)]
    assert [d.completed for d in store.list_decisions(session.run.id)] == [True] * 4


def test_a_closed_tools_broker_refuses_every_late_call(store: Store,
                                                       event_log: EventLog) -> None:
    from runner.broker import DeciderBroker, StepOrders

    session = daily_session(store, event_log, Scripted({}), {"MSFT": [FLAT, FLAT]})
    inner = StepOrders(session.trading, session.run.id, 0, {"MSFT": D(100)}, day(0), day(1))
    broker = DeciderBroker(inner)
    broker.close()
    for call in (lambda: broker.place(limit(Side.BUY, 1, "90")),
                 lambda: broker.cancel(1), lambda: broker.close_all(),
                 lambda: broker.place(market(Side.BUY, 1))):
        with pytest.raises(StepClosed):
            call()
    assert store.list_orders(session.run.id) == []


# -- close-all, flat at the close -----------------------------------------------------------
def test_close_all_cancels_the_book_and_flattens_longs_and_shorts(
        store: Store, event_log: EventLog) -> None:
    decider = Scripted({
        0: act(market(Side.BUY, 10), market(Side.SHORT, 20, "AAPL"),
               limit(Side.SELL, 10, "200")),
        2: act(limit(Side.BUY, 5, "80"), close_all=True)})
    session = daily_session(store, event_log, decider, {
        "MSFT": [FLAT, FLAT, FLAT, (102, 103, 101, 102), FLAT],
        "AAPL": [(50, 51, 49, 50), (50, 51, 49, 50), (50, 51, 49, 50), (48, 49, 47, 48),
                 (48, 49, 47, 48)]})
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    # Step 0 fills at step 1's opens: -1,000 + 1,000. Step 2 closes at step 3's opens:
    # sells 10 MSFT at 102 (+1,020), covers 20 AAPL at 48 (-960).
    trades = store.list_trades(run_id)
    assert [(t.step, t.seq, t.side, t.symbol, t.price) for t in trades] == [
        (0, 0, Side.BUY, "MSFT", D(100)), (0, 1, Side.SHORT, "AAPL", D(50)),
        (2, 0, Side.SELL, "MSFT", D(102)), (2, 1, Side.COVER, "AAPL", D(48))]
    assert store.get_portfolio(run_id).cash == D(10_060)
    assert store.get_portfolio(run_id).holdings == {}
    book = {(o.step, o.seq): o for o in orders_of(store, run_id)}
    assert (book[0, 2].state, book[0, 2].reason) == (OrderState.CANCELLED, "close-all")
    # The order the decision sent after its close-all stayed, to the end of the run.
    assert (book[2, 2].state, book[2, 2].reason) == (OrderState.CANCELLED, "the run ended")
    assert kinds(store, book[2, 2].id, run_id) == [("placed", 2), ("cancelled", 4)]
    replays_change_nothing(store, session)


def intraday_session(store: Store, event_log: EventLog, decider: object,
                     last: Ohlc, **spec: Any) -> Session:
    run = run_status(store).start_attempt(make_run(store, intraday_spec(**spec), cash=CASH).id)
    timeline = timeline_for(run.spec)
    ohlc = [FLAT] * (len(timeline) - 1) + [last]
    return Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                   model=store.get_model(run.model_id), decider=decider,  # type: ignore[arg-type]
                   timeline=timeline, bars={"AAPL": bars_at(timeline.times, ohlc)},
                   stop=StopSignal(), settings=RunnerSettings())


def test_flat_at_the_close_of_an_intraday_run(store: Store, event_log: EventLog) -> None:
    decider = Scripted({0: act(market(Side.BUY, 10, "AAPL"),
                               limit(Side.SELL, 10, "150", "AAPL"),
                               limit(Side.BUY, 10, "50", "AAPL", tif=TimeInForce.DAY))})
    session = intraday_session(store, event_log, decider, (100, 101.5, 99.5, 101),
                               flat_at_close=True)
    assert session.play() is Ending.COMPLETED
    run_id = session.run.id
    _, flat = store.list_trades(run_id)
    assert (flat.side, flat.quantity, flat.price, flat.step, flat.seq, flat.filled_at) == (
        Side.SELL, D(10), D(101), 389, FLAT_AT_CLOSE_SEQ, session.timeline.times[389])
    assert store.get_portfolio(run_id).cash == CASH - 1000 + 1010
    orders = orders_of(store, run_id)
    # The day order expired with the last bar (settled before its decision); the GTC
    # order was still open: flat at the close cancels it.
    assert [(o.state, o.reason) for o in orders[1:3]] == [
        (OrderState.CANCELLED, "close-all"),
        (OrderState.EXPIRED, "day order: its session ended without a fill")]
    assert orders[3].origin is OrderOrigin.FLAT_AT_CLOSE
    last = store.get_decision(run_id, 389)
    assert last is not None and last.completed and last.equity == D(10_010)


def test_an_intraday_day_order_lives_to_the_end_of_the_session(store: Store,
                                                               event_log: EventLog) -> None:
    decider = Scripted({0: act(limit(Side.BUY, 10, "50", "AAPL", tif=TimeInForce.DAY))})
    session = intraday_session(store, event_log, decider, FLAT)
    assert session.play() is Ending.COMPLETED
    [order] = orders_of(store, session.run.id)
    assert (order.state, order.reason) == (
        OrderState.EXPIRED, "day order: its session ended without a fill")
    assert kinds(store, order.id, session.run.id) == [("placed", 0), ("expired", 389)]


def test_the_new_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="flat_at_close is for intraday runs"):
        daily_spec(flat_at_close=True)
    with pytest.raises(ValidationError, match=r"maintenance_margin 0\.6 is above"):
        intraday_spec(maintenance_margin=D("0.6"))
    with pytest.raises(ValidationError):
        intraday_spec(initial_margin=D(0))
    # Left at their defaults, they are not stored (a previous runner reads the spec).
    stored = intraday_spec().stored()
    assert not {"initial_margin", "maintenance_margin", "flat_at_close"} & set(stored)
    assert RunSpec.model_validate(stored).initial_margin == D("0.5")
    assert intraday_spec(flat_at_close=True).stored()["flat_at_close"] is True


# -- crashes and resumes ---------------------------------------------------------------------
@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Store, int], None]]:
    """The runner dies just before the checkpoint of a step, whichever write it is (a
    decision that does nothing is recorded with its checkpoint): its bar was settled
    and its decision's orders sent, and the next runner plays the step again."""
    def arm(store: Store, step: int) -> None:
        checkpoint, record = store.complete_step, store.record_decision

        def killed() -> None:
            monkeypatch.setattr(store, "complete_step", checkpoint)
            monkeypatch.setattr(store, "record_decision", record)
            raise RuntimeError(f"killed before the checkpoint of step {step}")

        def complete_step(run_id: int, at: int, **kw: Any) -> None:
            if at == step:
                killed()
            checkpoint(run_id, at, **kw)

        def record_decision(decision: Decision, **kw: Any) -> Decision:
            if decision.step == step and decision.completed:
                killed()
            return record(decision, **kw)

        monkeypatch.setattr(store, "complete_step", complete_step)
        monkeypatch.setattr(store, "record_decision", record_decision)
    yield arm


@pytest.mark.parametrize("crash_step", [0, 2])
def test_a_step_played_again_after_a_crash_neither_places_nor_fills_twice(
        store: Store, event_log: EventLog, crash_at: Callable[[Store, int], None],
        crash_step: int) -> None:
    """Killed at the decision step (the order placed, no checkpoint) or at the fill step
    (the fill settled, no checkpoint): the next runner plays that step again."""
    decider = Scripted({0: act(limit(Side.BUY, 10, "98"), market(Side.SHORT, 5, "AAPL"))})
    bars = {"MSFT": [FLAT, (99, 100, 98.5, 99), (99, 99.5, 97, 98), FLAT],
            "AAPL": [(50, 51, 49, 50)] * 4}
    first = daily_session(store, event_log, decider, bars)
    crash_at(store, crash_step)
    with pytest.raises(RuntimeError, match="killed"):
        first.play()
    assert store.get_run(first.run.id).steps_done == crash_step
    second = again(store, event_log, first)
    assert second.play() is Ending.COMPLETED
    run_id = first.run.id
    limit_order, short = orders_of(store, run_id)
    assert kinds(store, limit_order.id, run_id) == [("placed", 0), ("filled", 2)]
    assert kinds(store, short.id, run_id) == [("placed", 0), ("filled", 0)]
    trades = store.list_trades(run_id)
    assert [(t.order_id, t.price) for t in trades] == [(short.id, D(50)),
                                                        (limit_order.id, D(98))]
    portfolio = store.get_portfolio(run_id)
    assert portfolio.cash == CASH + 250 - 980
    assert portfolio.holdings == {"MSFT": D(10), "AAPL": D(-5)}
    assert [d.step for d in store.list_decisions(run_id)] == [0, 1, 2, 3]


def test_a_stopped_run_cancels_its_open_orders(store: Store, event_log: EventLog) -> None:
    session = daily_session(store, event_log, Scripted({0: act(limit(Side.BUY, 1, "50"))}),
                            {"MSFT": [FLAT, FLAT, FLAT]})
    session.play_step(0)
    # The result is written with the final status, which cancels what is still open.
    assert session.result(Ending.STOPPED)["orders"] == {"cancelled": 1}
    run_status(store).transition(session.run.id, RunStatus.STOPPING)
    run_status(store).transition(session.run.id, RunStatus.STOPPED, reason="stop requested")
    [order] = orders_of(store, session.run.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, "the run ended (stopped)")
    [_, cancelled] = store.list_order_events(session.run.id)
    assert (cancelled.kind, cancelled.step, cancelled.bar_time) == (
        OrderEventKind.CANCELLED, 1, None)


# -- the baselines -----------------------------------------------------------------------------
@pytest.mark.parametrize("decider", [BuyAndHold(), SmaCrossover(3, 10)])
def test_the_baselines_trade_as_before_with_every_trade_an_order(
        store: Store, event_log: EventLog, decider: object) -> None:
    run = run_status(store).start_attempt(make_run(store, intraday_spec()).id)
    timeline = timeline_for(run.spec)
    provider = market_data_for(run.spec, store, RunnerSettings().data_dir)
    bars = {"AAPL": provider.bars("AAPL", timeline)}
    session = Session(store=store, publisher=EventPublisher(event_log, run.id), run=run,
                      model=store.get_model(run.model_id), decider=decider,  # type: ignore[arg-type]
                      timeline=timeline, bars=bars, stop=StopSignal(), settings=RunnerSettings())
    assert session.play() is Ending.COMPLETED
    trades = list(store.iter_trades(run.id))
    orders = {o.id: o for o in orders_of(store, run.id)}
    assert trades and len(orders) == len(trades)
    for t in trades:  # a market order per trade, filled at the next open as ever
        o = orders[t.order_id]  # type: ignore[index]
        assert (o.type, o.origin, o.step, o.seq, o.side) == (
            OrderType.MARKET, OrderOrigin.DECIDER, t.step, t.seq, t.side)
        assert o.state.value == t.status.value and o.trade_id == t.id
        expected = bars["AAPL"][min(t.step + 1, 389)]
        assert t.price == (expected.open if t.step < 389 else expected.close)
    # The decisions' orders are what they always were: market orders, JSON unchanged.
    decisions = [d for d in store.list_decisions(run.id) if d.orders]
    assert all(set(o.to_json()) == {"side", "symbol", "quantity", "type", "limit_price"}
               for d in decisions for o in d.orders)
    if isinstance(decider, BuyAndHold):
        assert len(trades) == 1 and trades[0].step == 0
    cash = run.spec.initial_cash
    for t in trades:
        if t.filled:
            cash += (-1 if t.side.buys else 1) * t.quantity * t.price
    assert store.get_portfolio(run.id).cash == cash


def test_a_decision_from_before_orders_reads_as_ever(store: Store) -> None:
    run = make_run(store)
    store.record_decision(Decision(run_id=run.id, step=0, bar_time=day(0), action="buy",
                                   orders=[market(Side.BUY, 1)], reasoning=None,
                                   outcome="trade", latency_ms=1.0))
    old = {"side": "buy", "symbol": "MSFT", "quantity": "2", "type": "market",
           "limit_price": None}
    assert Order.from_json(old) == market(Side.BUY, 2)
    decision = store.get_decision(run.id, 0)
    assert decision is not None and (decision.cancels, decision.close_all) == ([], False)
