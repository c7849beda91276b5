"""The Alpaca paper book (runner.brokers.alpaca_paper) through alpaca-py's real
TradingClient and TradingStream, against a local Alpaca trading server
(tests/fakes/alpaca_trading.py): orders and their client ids, fills from the stream,
refusals, a pod loss (a SIGKILLed runner), cancels, flattening and reconciling, retries,
and keys that appear in no message and no log line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.records import Order, OrderType, Refusal, Side, TimeInForce
from runner.brokers.alpaca_paper import (
    AlpacaPaperBook,
    BrokerEvent,
    BrokerOrder,
    BrokerRefused,
    BrokerUnavailable,
    client_order_id,
    parse_client_order_id,
)
from tests.fakes.alpaca_trading import FakeAlpacaTrading

KEY_ID = "PKFAKEKEYID7Q2W9E4R1"
SECRET = "fake-secret-3f9a1c7e5b2d8a6f4e0c9b1d"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_keys_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log line of every test, DEBUG included: neither key in any of them."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        line = record.getMessage()
        assert KEY_ID not in line and SECRET not in line, (record.name, line)


@pytest.fixture
def trading() -> Iterator[FakeAlpacaTrading]:
    with FakeAlpacaTrading(KEY_ID, SECRET, cash=Decimal(100_000),
                           prices={"AAPL": Decimal(100), "MSFT": Decimal(400)}) as server:
        yield server


def new_book(trading: FakeAlpacaTrading, *, deadline: float = 10,
             secret: str = SECRET) -> AlpacaPaperBook:
    return AlpacaPaperBook(SecretStr(KEY_ID), SecretStr(secret), url=trading.url,
                           stream_url=trading.stream_url, deadline_seconds=deadline)


@pytest.fixture
def book(trading: FakeAlpacaTrading) -> Iterator[AlpacaPaperBook]:
    with new_book(trading) as started:
        trading.wait_for_listeners(1)
        yield started


def wait_for(book: AlpacaPaperBook, event: str, client_id: str,
             timeout: float = 5) -> BrokerEvent:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        got = book.next_event(left)
        if got is not None and got.event == event and got.client_order_id == client_id:
            return got
    raise AssertionError(f"no {event} of {client_id} within {timeout} s")


def no_keys(text: str) -> None:
    assert KEY_ID not in text and SECRET not in text


def buy(symbol: str = "AAPL", quantity: int | str = 10, **kw: object) -> Order:
    return Order(side=Side.BUY, symbol=symbol, quantity=Decimal(quantity), **kw)  # type: ignore[arg-type]


def test_client_order_ids_are_deterministic_and_short() -> None:
    assert client_order_id(7, 3, 0) == "tr-7-3-0"
    assert parse_client_order_id("tr-7-3-0") == (7, 3, 0)
    assert parse_client_order_id("tr-7-3") is None
    assert parse_client_order_id("8f14e45f-ceea-467e-9a4b-0d1e7c1f2b3a") is None
    longest = client_order_id(2**63 - 1, 10**9, 3_999_999)
    assert len(longest) <= 48
    with pytest.raises(ValueError):
        client_order_id(1, 1, 1, prefix="a" * 43)


def test_an_order_fills_through_the_stream(trading: FakeAlpacaTrading,
                                           book: AlpacaPaperBook) -> None:
    placed = book.submit(buy(), run_id=7, step=3, seq=0)
    assert isinstance(placed, BrokerOrder)
    assert (placed.client_order_id, placed.status, placed.existing) == ("tr-7-3-0", "new",
                                                                         False)
    sent = trading.seen[-1]
    assert (sent.method, sent.path) == ("POST", "/v2/orders")
    assert sent.body == {"symbol": "AAPL", "qty": 10.0, "side": "buy", "type": "market",
                         "time_in_force": "day", "client_order_id": "tr-7-3-0"}
    assert wait_for(book, "new", "tr-7-3-0").price is None

    trading.fill("tr-7-3-0", price="101.25")
    fill = wait_for(book, "fill", "tr-7-3-0")
    assert (fill.run_id, fill.step, fill.seq) == (7, 3, 0)
    assert (fill.price, fill.quantity, fill.filled_quantity) == (
        Decimal("101.25"), Decimal(10), Decimal(10))
    assert fill.position_quantity == Decimal(10)
    assert fill.order.status == "filled" and fill.order.filled_avg_price == Decimal("101.25")
    assert fill.execution_id and not fill.recovered

    # what the fake serves is what alpaca-py's own models take
    from alpaca.trading.models import Order as AlpacaOrder
    from alpaca.trading.models import Position, TradeUpdate
    AlpacaOrder(**trading.by_client_id("tr-7-3-0"))
    Position(**trading._position_json("AAPL"))
    TradeUpdate(event="fill", order=trading.by_client_id("tr-7-3-0"),
                timestamp=fill.timestamp, price="101.25", qty="10", position_qty="10")


def test_order_types_sides_and_time_in_force(trading: FakeAlpacaTrading,
                                             book: AlpacaPaperBook) -> None:
    orders = [
        buy(type=OrderType.LIMIT, limit_price=Decimal("99.5"),
            time_in_force=TimeInForce.GTC),
        Order(side=Side.SELL, symbol="AAPL", quantity=Decimal(3), type=OrderType.STOP,
              stop_price=Decimal(95)),
        Order(side=Side.SHORT, symbol="MSFT", quantity=Decimal(2),
              type=OrderType.STOP_LIMIT, stop_price=Decimal(390), limit_price=Decimal(389)),
        Order(side=Side.COVER, symbol="MSFT", quantity=Decimal("1.5")),
    ]
    for seq, order in enumerate(orders):
        assert isinstance(book.submit(order, 1, 0, seq), BrokerOrder)
    bodies = [s.body for s in trading.seen if s.method == "POST"]
    assert [(b["side"], b["type"], b["time_in_force"], b["qty"], b.get("limit_price"),
             b.get("stop_price")) for b in bodies] == [
        ("buy", "limit", "gtc", 10.0, 99.5, None),
        ("sell", "stop", "day", 3.0, None, 95.0),
        ("sell", "stop_limit", "day", 2.0, 389.0, 390.0),
        ("buy", "market", "day", 1.5, None, None),
    ]
    # a malformed order never leaves
    refused = book.submit(buy(quantity=0), 1, 0, 9)
    assert isinstance(refused, Refusal) and "quantity" in refused.reason
    assert trading.order_count("tr-1-0-9") == 0


def test_a_partial_fill_then_the_rest(trading: FakeAlpacaTrading,
                                      book: AlpacaPaperBook) -> None:
    book.submit(buy(type=OrderType.LIMIT, limit_price=Decimal(101)), 2, 5, 1)
    trading.fill("tr-2-5-1", qty=4, price=100)
    first = wait_for(book, "partial_fill", "tr-2-5-1")
    assert (first.quantity, first.price, first.filled_quantity) == (
        Decimal(4), Decimal(100), Decimal(4))
    assert first.order.status == "partially_filled" and first.order.remaining == 6
    trading.fill("tr-2-5-1", qty=6, price=102)
    rest = wait_for(book, "fill", "tr-2-5-1")
    assert (rest.quantity, rest.price, rest.filled_quantity) == (
        Decimal(6), Decimal(102), Decimal(10))
    assert rest.order.filled_avg_price == Decimal("101.2")


def test_a_broker_refusal_is_an_answer_with_its_reason(trading: FakeAlpacaTrading,
                                                       book: AlpacaPaperBook) -> None:
    refused = book.submit(buy("MSFT", 1000), 3, 0, 0)  # 400 000 > 100 000 of cash
    assert isinstance(refused, Refusal)
    assert "insufficient buying power" in refused.reason and "tr-3-0-0" in refused.reason
    no_keys(refused.reason)
    assert trading.order_count() == 0
    # a rejection after the order was taken comes on the stream
    book.submit(buy(), 3, 0, 1)
    trading.reject("tr-3-0-1")
    rejected = wait_for(book, "rejected", "tr-3-0-1")
    assert rejected.order.status == "rejected" and rejected.quantity is None


def test_a_new_book_sending_the_order_again_gets_the_first(
        trading: FakeAlpacaTrading, book: AlpacaPaperBook) -> None:
    first = book.submit(buy(), 4, 2, 0)
    assert isinstance(first, BrokerOrder)
    replaced = new_book(trading)  # the next pod's book
    try:
        again = replaced.submit(buy(), 4, 2, 0)
    finally:
        replaced.close()
    assert isinstance(again, BrokerOrder)
    assert again.existing and again.id == first.id
    assert trading.order_count("tr-4-2-0") == 1
    assert [s.status for s in trading.seen if s.method == "POST"] == [200, 422]


def test_a_runner_killed_with_an_order_in_flight_fills_it_once(
        trading: FakeAlpacaTrading) -> None:
    """A runner process sends an order and is SIGKILLed before its fill; the fill
    happens while no runner is there; the next attempt finds the order by its client id
    and records its fill once (from the order, not the stream)."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from decimal import Decimal
        from pydantic import SecretStr
        from core.records import Order, Side
        from runner.brokers.alpaca_paper import AlpacaPaperBook
        book = AlpacaPaperBook(SecretStr(os.environ["KEY"]), SecretStr(os.environ["SECRET"]),
                               url={trading.url!r}, stream_url={trading.stream_url!r}).start()
        book.submit(Order(side=Side.BUY, symbol="AAPL", quantity=Decimal(10)), 5, 8, 0)
        print("sent", flush=True)
        time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE,
                              env={**os.environ, "KEY": KEY_ID, "SECRET": SECRET})
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "sent"
        trading.wait_for_listeners(1)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        if runner.stdout is not None:
            runner.stdout.close()
    assert runner.returncode == -signal.SIGKILL
    trading.fill("tr-5-8-0", price="100.5")  # nobody listens

    with new_book(trading) as next_attempt:
        trading.wait_for_listeners(1)
        found = next_attempt.submit(buy(), 5, 8, 0)
        assert isinstance(found, BrokerOrder) and found.existing
        assert found.status == "filled"
        fills = [e for e in [next_attempt.catch_up(found)] if e is not None]
        assert next_attempt.catch_up(found, Decimal(10), Decimal(1005)) is None
        time.sleep(0.3)
        fills += [e for e in next_attempt.events() if e.is_fill]
    assert len(fills) == 1
    assert (fills[0].quantity, fills[0].price, fills[0].recovered) == (
        Decimal(10), Decimal("100.5"), True)
    assert trading.order_count("tr-5-8-0") == 1


def test_a_fill_after_the_new_attempt_started_is_reported_once(
        trading: FakeAlpacaTrading, book: AlpacaPaperBook) -> None:
    book.submit(buy(), 6, 1, 0)
    trading.fill("tr-6-1-0", qty=4, price=100)  # seen by the first book only
    with new_book(trading) as next_attempt:
        trading.wait_for_listeners(2)
        found = next_attempt.submit(buy(), 6, 1, 0)
        assert isinstance(found, BrokerOrder) and found.filled_quantity == 4
        recovered = next_attempt.catch_up(found)  # the ledger had nothing of it
        assert recovered is not None and recovered.quantity == 4
        trading.fill("tr-6-1-0", qty=6, price=103)
        rest = wait_for(next_attempt, "fill", "tr-6-1-0")
        assert (rest.quantity, rest.price) == (Decimal(6), Decimal(103))
        time.sleep(0.2)
        assert not [e for e in next_attempt.events() if e.is_fill]


def test_a_fill_the_stream_did_not_bring_is_reported_with_the_next(
        trading: FakeAlpacaTrading, book: AlpacaPaperBook) -> None:
    """A book that missed a partial fill (its stream was down) reports it with the next
    fill: the unreported quantity at its average price, from the order's figures."""
    book.submit(buy(), 12, 0, 0)
    trading.fill("tr-12-0-0", qty=4, price=100)
    with new_book(trading) as late:  # no catch_up: it knows nothing of the first 4
        trading.wait_for_listeners(2)
        trading.fill("tr-12-0-0", qty=6, price=103)
        both = wait_for(late, "fill", "tr-12-0-0")
    assert (both.quantity, both.price, both.filled_quantity) == (
        Decimal(10), Decimal("101.8"), Decimal(10))


def test_cancel_all_for_cancels_this_runs_orders_only(trading: FakeAlpacaTrading,
                                                      book: AlpacaPaperBook) -> None:
    resting = buy(type=OrderType.LIMIT, limit_price=Decimal(90), quantity=1)
    book.submit(resting, 7, 0, 0)
    book.submit(resting, 7, 1, 0)
    book.submit(resting, 70, 0, 0)  # another run: "tr-70-" is not "tr-7-"
    book.submit(buy(quantity=1), 7, 2, 0)
    trading.fill("tr-7-2-0")

    done = book.cancel_all_for(7)
    assert sorted(done) == ["tr-7-0-0", "tr-7-1-0"]
    assert all(isinstance(o, BrokerOrder) and o.status == "canceled" for o in done.values())
    assert wait_for(book, "canceled", "tr-7-1-0").order.status == "canceled"
    assert trading.by_client_id("tr-70-0-0")["status"] == "new"
    assert trading.by_client_id("tr-7-2-0")["status"] == "filled"
    assert not any(s.method == "DELETE" and s.path == "/v2/orders" for s in trading.seen)

    not_open = book.cancel("tr-7-2-0")
    assert isinstance(not_open, Refusal) and "filled" in not_open.reason
    unknown = book.cancel("tr-7-9-9")
    assert isinstance(unknown, Refusal) and "no order" in unknown.reason


def test_flatten_closes_positions_with_orders_of_the_run(
        trading: FakeAlpacaTrading, book: AlpacaPaperBook) -> None:
    book.submit(buy("AAPL", 10), 8, 0, 0)
    book.submit(Order(side=Side.SHORT, symbol="MSFT", quantity=Decimal(5)), 8, 0, 1)
    trading.fill("tr-8-0-0")
    trading.fill("tr-8-0-1")
    assert {s: p.quantity for s, p in book.positions().items()} == {
        "AAPL": Decimal(10), "MSFT": Decimal(-5)}

    sent = book.flatten(8, 4, 100, ["AAPL", "MSFT"])
    again = book.flatten(8, 4, 100, ["AAPL", "MSFT"])  # a replaced runner, before fills
    assert {s: o.client_order_id for s, o in sent.items()
            if isinstance(o, BrokerOrder)} == {"AAPL": "tr-8-4-100", "MSFT": "tr-8-4-101"}
    assert all(isinstance(o, BrokerOrder) and o.existing for o in again.values())
    assert trading.order_count("tr-8-4-100") == trading.order_count("tr-8-4-101") == 1
    closing = {s: (o.side, o.quantity) for s, o in sent.items() if isinstance(o, BrokerOrder)}
    assert closing == {"AAPL": ("sell", Decimal(10)), "MSFT": ("buy", Decimal(5))}
    trading.fill("tr-8-4-100")
    trading.fill("tr-8-4-101")
    assert book.positions() == {}
    assert book.flatten(8, 5, 100, ["AAPL", "MSFT"]) == {}
    # the run's own holdings, when the loop gives them
    assert book.flatten(8, 6, 100, ["AAPL"], holdings={"AAPL": Decimal(0)}) == {}


def test_reconcile_lists_the_runs_open_orders_and_the_positions(
        trading: FakeAlpacaTrading, book: AlpacaPaperBook) -> None:
    book.submit(buy(quantity=3), 9, 0, 0)
    trading.fill("tr-9-0-0", price=100)
    book.submit(buy(quantity=2, type=OrderType.LIMIT, limit_price=Decimal(95)), 9, 1, 0)
    book.submit(buy(quantity=2, type=OrderType.LIMIT, limit_price=Decimal(96)), 9, 1, 1)
    trading.fill("tr-9-1-1", qty=1)
    book.submit(buy(quantity=1, type=OrderType.LIMIT, limit_price=Decimal(95)), 90, 0, 0)

    state = book.reconcile(9)
    assert [(o.client_order_id, o.status, o.filled_quantity) for o in state.open_orders] == [
        ("tr-9-1-0", "new", Decimal(0)), ("tr-9-1-1", "partially_filled", Decimal(1))]
    assert {s: (p.quantity, p.avg_entry_price) for s, p in state.positions.items()} == {
        "AAPL": (Decimal(4), Decimal(99))}
    assert book.find("tr-9-0-0") is not None and book.find("tr-9-9-9") is None


def test_transient_failures_are_retried_within_the_deadline(
        trading: FakeAlpacaTrading) -> None:
    book = new_book(trading, deadline=0.8)
    try:
        trading.fail_next(1, 503)
        assert isinstance(book.submit(buy(), 10, 0, 0), BrokerOrder)
        trading.fail_next(1, 429)
        assert isinstance(book.submit(buy(), 10, 0, 1), BrokerOrder)
        trading.fail_next(10, 503)  # 0 s, then 1 s: past the deadline
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as failed:
            book.submit(buy(), 10, 0, 2)
        assert time.monotonic() - started < 0.8
        assert "503" in str(failed.value)
        no_keys(str(failed.value))
    finally:
        book.close()
    assert trading.order_count() == 2


def test_wrong_keys_are_refused_for_the_operator_without_the_keys(
        trading: FakeAlpacaTrading) -> None:
    book = new_book(trading, secret="wrong-" + SECRET[6:])
    try:
        with pytest.raises(BrokerRefused) as refused:
            book.submit(buy(), 11, 0, 0)
    finally:
        book.close()
    assert "401" in str(refused.value)
    no_keys(str(refused.value))
    no_keys(repr(book))
