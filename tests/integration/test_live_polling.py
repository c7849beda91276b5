"""The polled live feed (TICKRUN_LIVE_BARS=poll) against local servers speaking Alpaca's
and Massive's REST bar endpoints (tests/fakes), on a scaled clock: the fakes' market is
a day in progress by that clock (bars up to its current minute, the forming one
included), and the feed emits only the minutes that ended, each once, in order.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ProviderRefused
from core.eventlog import EventLog, EventType
from core.eventlog.sqlite_log import SqliteEventLog
from core.marketdata.live.base import Connected, Disconnected, LiveBar, LiveEvent
from core.marketdata.live.minutes import MINUTE
from core.marketdata.live.polling import PollingFeed
from core.marketdata.providers.factory import build_provider
from core.marketdata.settings import MarketDataSettings
from core.status import RunStatus
from core.store import Store, open_store
from core.store.sqlite import SqliteStore
from runner.live.clock import LiveClock
from runner.live.feeds import live_feed_for
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.polygon_server import FakeMarketServer, FakePolygon, Market
from tests.integration.test_live_runs import (
    HALF_DAY,
    OPEN,
    SESSION,
    SYMBOLS,
    _events,
    clock_at,
    late_bars,
    live_spec,
    play_live,
)

pytestmark = pytest.mark.timeout(120)

KEY_ID, SECRET, POLYGON_KEY = "PKPOLLTEST0123456789", "poll-secret-0123456789abc", "poly-poll-key"
WRONG_KEY = "WRONG-KEY-do-not-print-0123"
SPEED = 120.0  # clock seconds per wall second: a minute in half a second
INTERVAL = 5.0  # seconds of the clock between polls
DEADLINE = 0.8  # wall seconds one poll retries: a 503 is asked twice, then the poll fails


@dataclass
class Rest:
    source: str
    fake: FakeMarketServer
    settings: MarketDataSettings

    def feed(self, clock: LiveClock, settings: MarketDataSettings | None = None
             ) -> PollingFeed:
        provider = build_provider("alpaca" if self.source == "alpaca" else "polygon",
                                  settings or self.settings)
        return PollingFeed(provider, interval=INTERVAL, clock=clock,
                           wall_seconds=clock.wall_seconds)


@pytest.fixture(params=["alpaca", "polygon"])
def rest(request: pytest.FixtureRequest) -> Iterator[Rest]:
    market = Market(SYMBOLS)
    fake: FakeMarketServer
    if request.param == "alpaca":
        fake = FakeAlpaca(KEY_ID, SECRET, market=market, feeds=("iex",))
        settings = MarketDataSettings(
            alpaca_api_key_id=SecretStr(KEY_ID), alpaca_api_secret_key=SecretStr(SECRET),
            alpaca_data_url=fake.url, alpaca_feed="iex",
            market_data_fetch_deadline_seconds=DEADLINE, live_bars="poll",
            live_poll_seconds=INTERVAL)
    else:
        fake = FakePolygon(POLYGON_KEY, market=market)
        settings = MarketDataSettings(
            polygon_api_key=SecretStr(POLYGON_KEY), polygon_base_url=fake.url,
            market_data_fetch_deadline_seconds=DEADLINE, live_bars="poll",
            live_poll_seconds=INTERVAL)
    with fake:
        yield Rest(request.param, fake, settings)


@dataclass
class Seen:
    event: LiveEvent
    at: dt.datetime  # the clock when the consumer got it


def collect(feed: PollingFeed, clock: LiveClock, until: dt.datetime, *,
            wall_seconds: float = 0.0, done: Callable[[list[Seen]], bool] | None = None
            ) -> list[Seen]:
    """Every event until the clock reads `until`, and then on until `done` holds of
    what was seen (if given), for `wall_seconds` at most."""
    seen: list[Seen] = []
    deadline = time.monotonic() + wall_seconds
    while clock() < until or (done is not None and not done(seen)
                              and time.monotonic() < deadline):
        event = feed.get(timeout=0.05)
        if event is not None:
            seen.append(Seen(event, clock()))
    return seen


def recovered(seen: list[Seen], source: str, minutes: int) -> bool:
    """The feed connected again and emitted every symbol's first `minutes` minutes."""
    return (any(s.event == Connected(source, 2) for s in seen)
            and all(len(bars_of(seen, symbol)) >= minutes for symbol in SYMBOLS))


def bars_of(seen: list[Seen], symbol: str) -> list[LiveBar]:
    return [s.event for s in seen if isinstance(s.event, LiveBar) and s.event.symbol == symbol]


def assert_each_closed_minute_once(seen: list[Seen], market: Market, upto: int) -> None:
    """Every symbol's bars are the session's minutes 0..upto-1 at least, each once, in
    order, each got after its minute ended, each the market's bar."""
    for symbol in SYMBOLS:
        bars = bars_of(seen, symbol)
        times = [b.bar.time for b in bars]
        assert times == SESSION[:len(times)], (symbol, times[:3], len(times))
        assert len(times) >= upto, (symbol, len(times))
        for live in bars:
            want = market.minute_bar(symbol, live.bar.time)
            assert (live.bar.open, live.bar.high, live.bar.low, live.bar.close,
                    live.bar.volume) == (want.open, want.high, want.low, want.close,
                                         want.volume)
    for s in seen:
        if isinstance(s.event, LiveBar):
            assert s.event.bar.time + MINUTE <= s.at, (s.event, s.at)


def test_only_closed_minutes_are_emitted_each_once_in_order(rest: Rest) -> None:
    clock = clock_at(OPEN + 2 * MINUTE + dt.timedelta(seconds=30), connect=0.2, speed=SPEED)
    rest.fake.market.trading_until(clock)
    with rest.feed(clock) as feed:
        feed.start(SYMBOLS)
        seen = collect(feed, clock, OPEN + 6 * MINUTE + dt.timedelta(seconds=50))
    assert isinstance(seen[0].event, Connected) and seen[0].event.attempt == 1
    assert [s.event for s in seen if not isinstance(s.event, LiveBar)] == [
        Connected(rest.source, 1)]
    assert_each_closed_minute_once(seen, rest.fake.market, upto=6)
    for symbol in SYMBOLS:  # the fake serves the forming minute; it was never emitted
        assert len(bars_of(seen, symbol)) == 6
        asked = clock()
        served = rest.fake.market.bars(symbol, "minute", OPEN, OPEN + 60 * MINUTE)
        assert served[-1].start + MINUTE > asked, (served[-1], asked)
    # Each poll asks from the minute after the last one emitted.
    assert len({r.params.get("start") or r.path for r in rest.fake.requests}) > 2


def test_a_failing_poll_is_a_drop_and_loses_no_minute(rest: Rest) -> None:
    clock = clock_at(OPEN + 3 * MINUTE + dt.timedelta(seconds=10), connect=0.2, speed=SPEED)
    rest.fake.market.trading_until(clock)
    with rest.feed(clock) as feed:
        feed.start(SYMBOLS)
        seen = collect(feed, clock, OPEN + 4 * MINUTE + dt.timedelta(seconds=10))
        # 503s for 40 requests: 20 polls (each asks twice), over a minute of the clock
        # (more on a loaded machine: a poll's two asks take longer there, so the polls
        # fail for longer by the clock)
        rest.fake.fail_next(40, 503)
        # Until the feed is back and has emitted minute 7 (whenever the failing polls
        # ended: their length by the clock is the machine's), then 30 s of the clock
        # more, and at least until 9:30 after the open, to see nothing emitted twice.
        seen += collect(feed, clock, OPEN + 9 * MINUTE + dt.timedelta(seconds=30),
                        wall_seconds=60, done=lambda got: recovered(seen + got, rest.source, 8))
        seen += collect(feed, clock, clock() + dt.timedelta(seconds=30))
    events = [s.event for s in seen if not isinstance(s.event, LiveBar)]
    assert events[0] == Connected(rest.source, 1)
    assert isinstance(events[1], Disconnected) and "503" in events[1].reason, events
    assert events[2:] == [Connected(rest.source, 2)], events
    dropped, back = (s.at for s in seen if s.event in events[1:3])
    assert back - dropped >= MINUTE, (dropped, back)  # minutes ended while polls failed
    assert_each_closed_minute_once(seen, rest.fake.market, upto=8)
    assert 503 in {r.status for r in rest.fake.requests}


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_refusal_ends_the_feed_naming_the_setting_not_the_key(rest: Rest,
                                                                 refusal: int) -> None:
    clock = clock_at(OPEN + 3 * MINUTE, connect=0.0, speed=SPEED)
    rest.fake.market.trading_until(clock)
    settings, setting = _refused(rest, refusal)
    with rest.feed(clock, settings) as feed:
        feed.start(SYMBOLS)
        with pytest.raises(ProviderRefused) as refused:
            collect(feed, clock, OPEN + 5 * MINUTE)
        with pytest.raises(ProviderRefused):  # and for good
            feed.get(timeout=0)
    message = str(refused.value)
    assert setting in message, message
    for secret in (WRONG_KEY, KEY_ID, SECRET, POLYGON_KEY):
        assert secret not in message
    assert {r.status for r in rest.fake.requests} == {refusal}


def _refused(rest: Rest, status: int) -> tuple[MarketDataSettings, str]:
    """Settings the fake refuses with `status`, and the setting the refusal names."""
    if rest.source == "alpaca":
        if status == 401:
            return (rest.settings.model_copy(update={"alpaca_api_secret_key":
                                                     SecretStr(WRONG_KEY)}),
                    "TICKRUN_ALPACA_API_SECRET_KEY")
        return rest.settings.model_copy(update={"alpaca_feed": "sip"}), "TICKRUN_ALPACA_FEED"
    assert isinstance(rest.fake, FakePolygon)
    if status == 401:
        return (rest.settings.model_copy(update={"polygon_api_key": SecretStr(WRONG_KEY)}),
                "TICKRUN_POLYGON_API_KEY")
    rest.fake.entitled = False
    return rest.settings, "TICKRUN_POLYGON_API_KEY"


def test_live_bars_poll_gives_a_live_run_the_polling_feed_on_its_clock(rest: Rest) -> None:
    clock = clock_at(OPEN, speed=SPEED)
    feed = live_feed_for(live_spec(rest.source), rest.settings, clock)
    assert isinstance(feed, PollingFeed) and feed.provider == rest.source
    assert feed.interval == INTERVAL
    # a minute's bar may come a poll after the one just after its end: no gap before
    assert feed.grace == dt.timedelta(seconds=1 + INTERVAL + 5)
    stream = live_feed_for(live_spec(rest.source),
                           rest.settings.model_copy(update={"live_bars": "stream"}), clock)
    assert not isinstance(stream, PollingFeed)


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


def test_a_live_run_joining_late_plays_every_minute_from_polled_bars(
        rest: Rest, store: Store, event_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runner.live.session")
    # The runner joins 205 minutes into the half day: its first poll brings the
    # minutes gone by (too late to decide but the last ones), then each minute as it
    # closes. Slower than the stream tests: a poll is a round trip to the provider
    # (tens of milliseconds), which the 5 s grace of a minute must cover: 333 ms of
    # wall time at 15x (167 ms at 30x was overrun once, on a loaded machine).
    join = 205
    clock = clock_at(OPEN + join * MINUTE + dt.timedelta(seconds=20), connect=1.0, speed=15)
    rest.fake.market.trading_until(clock)
    done = play_live(store, event_log, live_spec(rest.source, decision_deadline_seconds=600),
                     rest.settings, clock)
    assert done.status is RunStatus.COMPLETED, done
    assert done.steps_done == 210
    decisions = store.list_decisions(done.id, limit=1000)
    assert [d.step for d in decisions] == list(range(210))
    missed = [d.step for d in decisions if d.outcome == "missed"]
    assert missed and max(missed) < join, missed  # the minutes gone by, past the deadline
    live: dict[str, Any] = (done.result or {})["live"]
    gaps = [e.data for e in _events(event_log, done.id)
            if e.type is EventType.LOG and e.data.get("phase") == "gap"]
    # No bar lost: a gap is only a poll the loaded machine answered after the minute's
    # grace (733 ms of wall time here), its bar then logged late by the runner (but the
    # last minute's, which comes after the run ended).
    gapped = {(s, g["minute"]) for g in gaps for s in g["symbols"]}
    late = late_bars(caplog)
    assert {(s, m) for s, m in gapped if m != SESSION[-1].isoformat()} <= late, (live, gaps)
    assert live["gaps"] == len(gapped) <= 2 * len(SYMBOLS), (live, gaps)
    # The bars it played are the provider's, every minute from the join on (the
    # minutes gone by were decided missed before the first poll answered).
    for symbol in SYMBOLS:
        cached = list(store.load_prices(symbol, "1m", SESSION[0], SESSION[-1],
                                        source=rest.source))
        first = SESSION.index(cached[0].bar_time)
        played = [t for t in SESSION[first:] if (symbol, t.isoformat()) not in gapped]
        assert [b.bar_time for b in cached] == played, (symbol, cached[:1])
        assert first <= join, (symbol, first)  # every minute from the join on
        assert [b.close for b in cached] == [rest.fake.market.minute_bar(symbol, t).close
                                             for t in played]
        assert store.cached_days(rest.source, symbol, "1m", HALF_DAY, HALF_DAY) == set()
