"""The live bar feeds through the providers' official clients (alpaca-py's
StockDataStream, massive's WebSocketClient) against local websocket servers speaking
each provider's stream protocol (tests/fakes/alpaca_stream.py, polygon_stream.py).

Time is the test's: minutes pass when the test moves its clock, and the closing of a
minute or a gap is decided by core.marketdata.live.minutes against that clock. The
only waiting is for the local sockets, bounded by a timeout.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from pydantic import SecretStr

from core.bars import Bar
from core.errors import ProviderRefused
from core.marketdata.live.alpaca import AlpacaLiveFeed
from core.marketdata.live.base import Connected, Disconnected, LiveBar, LiveBarFeed, LiveEvent
from core.marketdata.live.minutes import DEFAULT_GRACE, MINUTE, ClosedMinute, MinuteBook, follow
from core.marketdata.live.polygon import PolygonLiveFeed
from tests.fakes.alpaca_stream import FakeAlpacaStream
from tests.fakes.polygon_stream import FakePolygonStream

pytestmark = pytest.mark.timeout(60)

OPEN = dt.datetime(2025, 6, 2, 13, 30, tzinfo=dt.UTC)  # 2025-06-02 09:30 New York
MINUTES = [OPEN + i * MINUTE for i in range(4)]
WAIT = 10.0  # seconds a test waits for the local sockets, at most
POLL_SECONDS = 1.0  # the longest a consumer waits before asking the clock again

KEY_ID = "PKTESTKEYID0123456789"
SECRET = "secret-Zq8w0123456789abcdefghijklmnop"
POLYGON_KEY = "polygon-key-0123456789abcdef"


@dataclass
class Stream:
    """One provider's fake and how to make a feed of it."""

    name: str
    fake: FakeAlpacaStream | FakePolygonStream

    def feed(self, *, wrong_key: bool = False, alpaca_feed: str = "iex") -> LiveBarFeed:
        if isinstance(self.fake, FakeAlpacaStream):
            return AlpacaLiveFeed(SecretStr(KEY_ID),
                                  SecretStr("wrong-" + SECRET if wrong_key else SECRET),
                                  feed=alpaca_feed,  # type: ignore[arg-type]
                                  url=self.fake.url(alpaca_feed))
        return PolygonLiveFeed(SecretStr("wrong-" + POLYGON_KEY if wrong_key else POLYGON_KEY),
                               feed=self.fake.feed, secure=False)

    @property
    def secrets(self) -> list[str]:
        return [KEY_ID, SECRET] if self.name == "alpaca" else [POLYGON_KEY]


@pytest.fixture(params=["alpaca", "polygon"])
def stream(request: pytest.FixtureRequest) -> Iterator[Stream]:
    fake: FakeAlpacaStream | FakePolygonStream = (
        FakeAlpacaStream(KEY_ID, SECRET, feeds=("iex",)) if request.param == "alpaca"
        else FakePolygonStream(POLYGON_KEY))
    with fake:
        yield Stream(request.param, fake)


@pytest.fixture
def started(stream: Stream) -> Iterator[tuple[Stream, LiveBarFeed]]:
    feed = stream.feed()
    feed.start(["AAPL", "MSFT"])
    try:
        assert next_event(feed) == Connected(stream.name, 1)
        yield stream, feed
    finally:
        feed.close()


class TestTime:
    """The test's clock, which the consumer's waits move: `follow` reads the feed through
    it, and a wait with nothing in flight moves the clock by the time waited, at once; a
    wait while the fake has sent what the feed has not handed over yet is a real one,
    for that message. A session plays in a fraction of a second, and a bar that was sent
    is never taken for a gap because a thread was slow."""

    __test__ = False

    def __init__(self, feed: LiveBarFeed, now: dt.datetime) -> None:
        self.feed = feed
        self.now = now
        self.in_flight = 0

    def __call__(self) -> dt.datetime:
        return self.now

    def expect(self, count: int = 1) -> None:
        self.in_flight += count

    def get(self, timeout: float | None = None) -> LiveEvent | None:
        if self.in_flight:
            self.in_flight -= 1
            return next_event(self.feed)
        assert timeout is not None
        self.now += dt.timedelta(seconds=timeout)
        return None


def next_event(feed: LiveBarFeed) -> LiveEvent:
    event = feed.get(timeout=WAIT)
    assert event is not None, f"nothing from the {feed.provider} feed in {WAIT}s"
    return event


def bar(minute: dt.datetime, open_: str, high: str, low: str, close: str,
        volume: int) -> Bar:
    return Bar(minute, Decimal(open_), Decimal(high), Decimal(low), Decimal(close),
               Decimal(volume))


def sample(symbol: str, minute: dt.datetime) -> Bar:
    """Prices with the digits exchanges print: 4 decimals under a dollar, odd cents."""
    i = MINUTES.index(minute) if minute in MINUTES else 0
    if symbol == "AAPL":
        return bar(minute, f"187.43{i}2", "188.01", "187.1", f"187.7{i}", 1200 + i)
    return bar(minute, f"0.073{i}", "0.0749", "0.0701", f"0.074{i}", 3_500_000 + i)


def test_bars_arrive_in_order_with_exact_decimal_prices(
        started: tuple[Stream, LiveBarFeed]) -> None:
    stream, feed = started
    sent = []
    for minute in MINUTES:
        for symbol in ("AAPL", "MSFT"):
            assert stream.fake.send_minute(symbol, sample(symbol, minute)) == 1
            sent.append(LiveBar(symbol, sample(symbol, minute)))
    got = [next_event(feed) for _ in sent]
    assert got == sent
    first = got[0]
    assert isinstance(first, LiveBar)
    assert first.bar.open == Decimal("187.4302") and str(first.bar.open) == "187.4302"
    assert first.bar.time == OPEN and first.bar.time.tzinfo == dt.UTC
    assert str(got[1].bar.low) == "0.0701"  # type: ignore[union-attr]
    # one connection, one Connected: nothing else came
    assert feed.get(timeout=0.2) is None
    assert stream.fake.connections == 1


def test_a_refused_key_is_a_clear_error_without_the_key(stream: Stream) -> None:
    feed = stream.feed(wrong_key=True)
    feed.start(["AAPL"])
    try:
        with pytest.raises(ProviderRefused) as refused:
            feed.get(timeout=WAIT)
        message = str(refused.value)
        expected = ("alpaca refused the live stream (auth failed): check "
                    "TICKRUN_ALPACA_API_KEY_ID and TICKRUN_ALPACA_API_SECRET_KEY"
                    if stream.name == "alpaca" else
                    "polygon refused the live stream (authentication failed): check "
                    "TICKRUN_POLYGON_API_KEY")
        assert message == expected
        for secret in stream.secrets:
            assert secret not in message
        with pytest.raises(ProviderRefused):  # it stays refused
            feed.get(timeout=0)
    finally:
        feed.close()
    assert stream.fake.auth_failures == 1  # a refusal is not retried
    assert stream.fake.connections == 1


def test_alpaca_sip_without_the_plan_is_refused() -> None:
    with FakeAlpacaStream(KEY_ID, SECRET, feeds=("iex",)) as fake:
        feed = AlpacaLiveFeed(SecretStr(KEY_ID), SecretStr(SECRET), feed="sip",
                              url=fake.url("sip"))
        feed.start(["AAPL"])
        try:
            with pytest.raises(ProviderRefused) as refused:
                feed.get(timeout=WAIT)
            assert str(refused.value) == (
                "alpaca refused the live stream (insufficient subscription): the plan "
                "does not include this feed: check TICKRUN_ALPACA_FEED")
        finally:
            feed.close()
        assert fake.connections == 1


def test_a_dropped_connection_is_reconnected_and_the_consumer_told(
        started: tuple[Stream, LiveBarFeed]) -> None:
    stream, feed = started
    fake = stream.fake
    fake.send_minute("AAPL", sample("AAPL", MINUTES[0]))
    assert next_event(feed) == LiveBar("AAPL", sample("AAPL", MINUTES[0]))
    assert fake.drop() == 1
    dropped = next_event(feed)
    assert isinstance(dropped, Disconnected) and dropped.provider == stream.name
    assert "ConnectionClosedError" in dropped.reason
    again = next_event(feed)
    assert again == Connected(stream.name, 2) and again.reconnected
    assert fake.connections == 2
    topic = "AAPL" if stream.name == "alpaca" else "AM.AAPL"
    assert fake.subscribed(topic) == 1  # resubscribed on the new connection
    fake.send_minute("AAPL", sample("AAPL", MINUTES[1]))
    assert next_event(feed) == LiveBar("AAPL", sample("AAPL", MINUTES[1]))


def test_a_clean_close_by_the_server_is_reconnected_too(
        started: tuple[Stream, LiveBarFeed]) -> None:
    """massive's client returns from `connect` on a clean close (ConnectionClosedOK)
    instead of reconnecting; alpaca-py reconnects on any websocket error."""
    stream, feed = started
    assert stream.fake.close_all(1000, "going away") == 1
    closed = next_event(feed)
    assert isinstance(closed, Disconnected)
    assert next_event(feed) == Connected(stream.name, 2)
    assert stream.fake.send_minute("AAPL", sample("AAPL", MINUTES[0])) == 1
    assert next_event(feed) == LiveBar("AAPL", sample("AAPL", MINUTES[0]))


def test_a_minute_never_sent_is_a_gap(started: tuple[Stream, LiveBarFeed]) -> None:
    """MSFT's minute 1 never comes: a gap once the grace has passed on the test's clock.
    AAPL's minute 2 never comes either, but its minute 3 does: a stream keeps a symbol's
    bars in order, so minute 2 is a gap at once, before its grace."""
    stream, feed = started
    time = TestTime(feed, OPEN)
    book = MinuteBook(MINUTES, ["AAPL", "MSFT"], time)
    minutes = follow(time, book, poll=POLL_SECONDS)

    def send(symbol: str, minute: dt.datetime) -> None:
        assert stream.fake.send_minute(symbol, sample(symbol, minute)) == 1
        time.expect()

    time.now = MINUTES[0] + MINUTE
    send("AAPL", MINUTES[0])
    send("MSFT", MINUTES[0])
    first = next(minutes)
    assert isinstance(first, ClosedMinute) and first.minute == MINUTES[0] and first.complete
    assert first.bar("MSFT") == sample("MSFT", MINUTES[0])
    assert time.now == MINUTES[0] + MINUTE  # complete: released without waiting

    time.now = MINUTES[1] + MINUTE
    send("AAPL", MINUTES[1])
    second = next(minutes)
    assert isinstance(second, ClosedMinute) and second.minute == MINUTES[1]
    assert second.gaps == ("MSFT",) and second.bar("AAPL") == sample("AAPL", MINUTES[1])
    assert time.now == MINUTES[1] + MINUTE + DEFAULT_GRACE  # decided when the grace ran out

    time.now = MINUTES[2] + MINUTE + dt.timedelta(seconds=1)
    send("MSFT", MINUTES[2])
    time.now = MINUTES[3] + MINUTE
    send("MSFT", MINUTES[3])
    send("AAPL", MINUTES[3])
    third, fourth = next(minutes), next(minutes)
    assert isinstance(third, ClosedMinute) and isinstance(fourth, ClosedMinute)
    assert (third.minute, third.gaps) == (MINUTES[2], ("AAPL",))
    assert third.bar("MSFT") == sample("MSFT", MINUTES[2])
    assert (fourth.minute, fourth.complete) == (MINUTES[3], True)
    assert time.now == MINUTES[3] + MINUTE  # minute 2 did not wait for its grace
    assert book.done and list(minutes) == []


def test_the_consumer_follows_a_drop_mid_session(started: tuple[Stream, LiveBarFeed]) -> None:
    """The stream drops during minute 1 and is back before it ends: minute 1's bar was
    lost in the outage and is a gap; the consumer saw the drop and the reconnection."""
    stream, feed = started
    time = TestTime(feed, OPEN)
    book = MinuteBook(MINUTES[:3], ["AAPL"], time)
    minutes = follow(time, book, poll=POLL_SECONDS)

    time.now = MINUTES[0] + MINUTE
    stream.fake.send_minute("AAPL", sample("AAPL", MINUTES[0]))
    time.expect()
    assert next(minutes) == ClosedMinute(MINUTES[0], {"AAPL": sample("AAPL", MINUTES[0])})
    time.now = MINUTES[1] + dt.timedelta(seconds=20)
    assert stream.fake.drop() == 1
    time.expect(2)
    dropped = next(minutes)
    assert isinstance(dropped, Disconnected) and dropped.provider == stream.name
    assert next(minutes) == Connected(stream.name, 2)
    gap = next(minutes)
    assert isinstance(gap, ClosedMinute) and gap.minute == MINUTES[1]
    assert gap.gaps == ("AAPL",) and time.now == MINUTES[1] + MINUTE + DEFAULT_GRACE
    time.now = MINUTES[2] + MINUTE
    stream.fake.send_minute("AAPL", sample("AAPL", MINUTES[2]))
    time.expect()
    last = next(minutes)
    assert isinstance(last, ClosedMinute) and last.complete and book.done
