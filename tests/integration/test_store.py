"""Store semantics, each test on PostgreSQL and on SQLite (real servers)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from core.errors import Conflict, IllegalTransition, NotFound
from core.lifecycle import run_result
from core.records import Order, Side, TradeStatus
from core.status import RunStatus
from core.store import RunFilter, Store
from runner.trading import TradingService
from tests.factories import daily_spec, intraday_spec, make_model, make_run, run_status

T0 = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)


def test_model_signature_is_unique_per_user(store: Store) -> None:
    make_model(store, "user-a", "alpha", llm="openai/gpt-4.1-mini", parameters={"t": 0.2})
    with pytest.raises(Conflict):
        make_model(store, "user-a", "alpha")
    other = make_model(store, "user-b", "alpha")  # another user may reuse it
    assert other.parameters == {}


def test_models_are_scoped_to_their_user(store: Store) -> None:
    model = make_model(store, "user-a", "alpha")
    with pytest.raises(NotFound):
        store.get_model(model.id, "user-b")
    with pytest.raises(NotFound):
        store.update_model(model.id, "user-b", {"llm": "x"})
    with pytest.raises(NotFound):
        store.delete_model(model.id, "user-b")
    updated = store.update_model(model.id, "user-a", {"custom_rules": "never short"})
    assert updated.custom_rules == "never short" and updated.updated_at >= model.updated_at
    assert [m.id for m in store.list_models("user-b")] == []


def test_idempotency_key_returns_the_same_run_or_conflicts(store: Store) -> None:
    model = make_model(store)
    spec = intraday_spec()
    first, created = store.create_run("user-a", model.id, spec, 390, idempotency_key="k1",
                                      request_hash="h1")
    again, created_again = store.create_run("user-a", model.id, spec, 390,
                                            idempotency_key="k1", request_hash="h1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(Conflict):
        store.create_run("user-a", model.id, spec, 390, idempotency_key="k1",
                         request_hash="h2")
    assert len(store.list_runs("user-a")) == 1


def test_a_run_on_another_users_model_is_refused_and_leaves_nothing(store: Store) -> None:
    """The model's check is part of the run's transaction (a pipeline on PostgreSQL):
    refused, it writes nothing, and the connection serves the next run."""
    theirs = make_model(store, "user-b", "beta")
    for _ in range(3):  # more than once: each refusal's connection goes back to the pool
        with pytest.raises(NotFound):
            store.create_run("user-a", theirs.id, intraday_spec(), 390, idempotency_key="k")
    assert store.list_runs("user-a") == [] and store.list_runs("user-b") == []
    mine = make_model(store, "user-a", "alpha")
    run, created = store.create_run("user-a", mine.id, intraday_spec(), 390,
                                    idempotency_key="k")
    assert created and store.get_portfolio(run.id).cash == intraday_spec().initial_cash


def test_run_statuses_and_counts_in_one_query(store: Store) -> None:
    queued = make_run(store, admit=False)
    admitted = make_run(store)
    run_status(store).transition(admitted.id, RunStatus.FAILED, reason="x")
    assert store.run_statuses([queued.id, admitted.id, 999_999]) == {
        queued.id: RunStatus.QUEUED, admitted.id: RunStatus.FAILED}
    assert store.run_statuses([]) == {}
    assert store.count_runs_by_status() == {RunStatus.QUEUED: 1, RunStatus.FAILED: 1}


def test_illegal_transitions_are_refused(store: Store) -> None:
    run = make_run(store, admit=False)
    with pytest.raises(IllegalTransition):
        run_status(store).transition(run.id, RunStatus.RUNNING)
    run_status(store).transition(run.id, RunStatus.STOPPED, reason="stopped before start")
    with pytest.raises(IllegalTransition):
        run_status(store).transition(run.id, RunStatus.ADMITTED)
    final = store.get_run(run.id)
    assert final.status is RunStatus.STOPPED and final.finished_at is not None


def test_admission_respects_limits_oldest_first_and_never_twice(store: Store) -> None:
    model_a, model_b = make_model(store, "user-a", "a"), make_model(store, "user-b", "b")
    runs_a = [make_run(store, user_id="user-a", model=model_a, admit=False) for _ in range(4)]
    runs_b = [make_run(store, user_id="user-b", model=model_b, admit=False) for _ in range(2)]
    with ThreadPoolExecutor(4) as pool:  # racing reconcilers
        batches = list(pool.map(lambda _: run_status(store).admit_queued(2, 3), range(4)))
    admitted = [r.id for batch in batches for r in batch]
    assert len(admitted) == len(set(admitted)) == 3
    assert admitted.count(runs_a[0].id) == 1 and runs_a[1].id in admitted
    assert runs_b[0].id in admitted and runs_a[2].id not in admitted
    run_status(store).transition(runs_a[0].id, RunStatus.STOPPED)  # a slot frees
    assert [r.id for r in run_status(store).admit_queued(2, 3)] == [runs_a[2].id]


def test_list_runs_filters_and_pages(store: Store) -> None:
    model = make_model(store)
    daily = make_run(store, daily_spec(), model=model)
    intraday = [make_run(store, intraday_spec(symbols=["NVDA"]), model=model) for _ in range(3)]
    assert [r.id for r in store.list_runs("user-a", RunFilter(mode="daily"))] == [daily.id]
    assert len(store.list_runs("user-a", RunFilter(symbol="NVDA"))) == 3
    page1 = store.list_runs("user-a", RunFilter(limit=2))
    page2 = store.list_runs("user-a", RunFilter(limit=2, before_id=page1[-1].id))
    assert [r.id for r in page1 + page2] == [intraday[2].id, intraday[1].id, intraday[0].id,
                                             daily.id]
    assert store.list_runs("user-b") == []


def test_one_hundred_concurrent_buys_never_overdraw(store: Store) -> None:
    run = make_run(store, cash=Decimal("1000"))
    trading = TradingService(store)
    barrier = threading.Barrier(20)

    def buy(i: int) -> TradeStatus:
        if i < 20:
            barrier.wait()
        trade = trading.execute(run.id, 0, i, Order(Side.BUY, "AAPL", Decimal("3")),
                                price=Decimal("33.33"), bar_time=T0)
        return trade.status

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(buy, range(100)))
    filled = statuses.count(TradeStatus.FILLED)
    assert filled == 10  # 1000 // (3 x 33.33) = 10
    portfolio = store.get_portfolio(run.id)
    trades = store.list_trades(run.id)
    assert len(trades) == 100
    spent = sum((t.quantity * t.price for t in trades if t.filled), Decimal(0))
    assert portfolio.cash == Decimal("1000") - spent >= 0
    assert portfolio.holdings == {"AAPL": sum((t.quantity for t in trades if t.filled),
                                              Decimal(0))}
    assert len(store.list_positions(run.id)) == filled
    assert all("insufficient cash" in (t.reason or "") for t in trades if not t.filled)


def test_replaying_a_step_never_trades_twice(store: Store) -> None:
    run = make_run(store, cash=Decimal("1000"))
    trading = TradingService(store)
    order = Order(Side.BUY, "AAPL", Decimal("1"))
    first = trading.execute(run.id, 5, 0, order, price=Decimal("10"), bar_time=T0)
    again = trading.execute(run.id, 5, 0, order, price=Decimal("11"), bar_time=T0)
    assert again.id == first.id and again.price == Decimal("10")
    assert store.get_portfolio(run.id).cash == Decimal("990")


def test_sells_need_holdings_and_refusals_are_recorded(store: Store) -> None:
    run = make_run(store, cash=Decimal("100"))
    trading = TradingService(store, fee_per_trade=Decimal("1"))
    refused = trading.execute(run.id, 0, 0, Order(Side.SELL, "AAPL", Decimal("1")),
                              price=Decimal("10"), bar_time=T0)
    assert refused.status is TradeStatus.REFUSED and "insufficient holdings" in str(refused.reason)
    bought = trading.execute(run.id, 0, 1, Order(Side.BUY, "AAPL", Decimal("9")),
                             price=Decimal("10"), bar_time=T0)
    assert bought.filled and bought.cash_after == Decimal("9")  # 100 - 90 - fee 1
    too_much = trading.execute(run.id, 1, 0, Order(Side.BUY, "AAPL", Decimal("1")),
                               price=Decimal("9"), bar_time=T0)  # 9 + fee 1 > 9
    assert not too_much.filled
    short = trading.execute(run.id, 1, 1, Order(Side.SHORT, "AAPL", Decimal("1")),
                            price=Decimal("9"), bar_time=T0)
    assert not short.filled and "held long (9)" in str(short.reason)  # sell it first
    trading.close_all(run.id, 2, 0, {"AAPL": Decimal("12")}, bar_time=T0)
    final = store.get_portfolio(run.id)
    assert final.holdings == {} and final.cash == Decimal("9") + 9 * 12 - 1


def test_decisions_are_recorded_once_and_checkpointed(store: Store) -> None:
    from core.records import Decision

    run = make_run(store)
    first = store.record_decision(Decision(run_id=run.id, step=0, bar_time=T0, action="buy",
                                           orders=[Order(Side.BUY, "AAPL", Decimal(2))],
                                           reasoning="first", outcome="trade", latency_ms=1))
    second = store.record_decision(Decision(run_id=run.id, step=0, bar_time=T0, action="hold",
                                            orders=[], reasoning="second", outcome="hold",
                                            latency_ms=1))
    assert second.reasoning == first.reasoning == "first" and second.orders == first.orders
    store.complete_step(run.id, 0, equity=Decimal("100000"), cash=Decimal("100000"))
    assert store.get_run(run.id).steps_done == 1
    assert store.get_decision(run.id, 0).completed  # type: ignore[union-attr]


def test_delete_run_removes_its_records(store: Store) -> None:
    run = make_run(store)
    TradingService(store).execute(run.id, 0, 0, Order(Side.BUY, "AAPL", Decimal(1)),
                                  price=Decimal(1), bar_time=T0)
    store.delete_run(run.id, "user-a")
    with pytest.raises(NotFound):
        store.get_run(run.id)
    assert store.list_trades(run.id) == []


def test_ledger_reads_past_one_thousand_trades_are_bounded_and_keyed(store: Store) -> None:
    run = make_run(store, cash=Decimal(10_000))
    trading = TradingService(store)
    for i in range(1005):  # 1,000 buys filled, then five sells of shares it does not hold
        step, seq = divmod(i, 5)
        side, qty = (Side.BUY, Decimal(1)) if i < 1000 else (Side.SELL, Decimal(10**6))
        decided = T0 + dt.timedelta(minutes=step)
        trading.execute(run.id, step, seq, Order(side, "AAPL", qty), price=Decimal(1),
                        bar_time=decided, filled_at=decided + dt.timedelta(minutes=1))

    everything = list(store.iter_trades(run.id, page=300))
    assert [(t.step, t.seq) for t in everything] == [divmod(i, 5) for i in range(1005)]
    first = everything[0]
    assert (first.bar_time, first.filled_at) == (T0, T0 + dt.timedelta(minutes=1))
    assert {t.filled_at for t in everything[1000:]} == {None}  # refused: never filled
    position = store.list_positions(run.id, limit=1)[0]
    assert (position.bar_time, position.filled_at) == (first.bar_time, first.filled_at)

    # The newest first, however long the ledger: not the 1,000 oldest.
    assert store.recent_trades(run.id, 3) == everything[:-4:-1]
    assert store.step_trades(run.id, 200) == everything[1000:]
    assert store.step_trades(run.id, 7) == everything[35:40]

    # The status filter acts before the LIMIT: the first page of all trades holds no
    # refusal, yet a page of refusals is full; keyset pages continue after the last id.
    assert all(t.filled for t in store.list_trades(run.id, limit=1000))
    refused = store.list_trades(run.id, status=TradeStatus.REFUSED, limit=2)
    assert refused == everything[1000:1002]
    rest = store.list_trades(run.id, status=TradeStatus.REFUSED, after_id=refused[-1].id)
    assert rest == everything[1002:]
    assert store.list_trades(run.id, after_id=everything[-1].id) == []

    # The controller's result streams the whole ledger: all 1,005, not a first page.
    result = run_result(store, store.get_run(run.id), "failed", from_ledger=True)
    assert (result["trades"], result["refused"], result["steps_done"]) == (1000, 5, 0)
    assert result["final_equity"] == "10000.000000"  # no completed step: the initial cash
