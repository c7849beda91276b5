"""The market data providers through their official clients (massive, alpaca-py) against
local fakes of the providers' REST APIs: no network, no database.

Every scenario runs on both providers. Expected bars come from the fakes' Market (a
pure function of symbol and bar start), so each assertion names exact values; the
fakes record every request, so "one request and no retry" is asserted, not assumed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import time
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr

from core.bars import Bar
from core.errors import ProviderRefused, ProviderUnavailable
from core.marketdata.providers.alpaca import AlpacaProvider
from core.marketdata.providers.base import BarProvider, Interval
from core.marketdata.providers.factory import build_provider
from core.marketdata.providers.polygon import PolygonProvider
from core.marketdata.settings import MarketDataSettings
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.polygon_server import NEW_YORK, FakeBar, FakePolygon, Market

POLYGON_KEY = "pk_fake_7f3a9c2e5b1d4f60"
ALPACA_KEY_ID = "AKFAKE0123456789XYZ"
ALPACA_SECRET = "sk_fake_9d8c7b6a5f4e3d2c1b0a"
WRONG_KEY = "wrong_0f1e2d3c4b5a6978"
SECRETS = (POLYGON_KEY, ALPACA_KEY_ID, ALPACA_SECRET, WRONG_KEY)
JUNE_2, JUNE_3, JUNE_4 = dt.date(2025, 6, 2), dt.date(2025, 6, 3), dt.date(2025, 6, 4)
UTC = dt.UTC


@dataclass
class Harness:
    """One provider's fake and how to point that provider at it."""

    name: str
    fake: FakePolygon | FakeAlpaca

    @property
    def market(self) -> Market:
        return self.fake.market

    def provider(self, deadline: float = 10.0, *, key: str | None = None, feed: str = "iex",
                 url: str | None = None) -> BarProvider:
        url = url or self.fake.url
        if self.name == "polygon":
            return PolygonProvider(SecretStr(key or POLYGON_KEY), url, deadline)
        return AlpacaProvider(SecretStr(ALPACA_KEY_ID), SecretStr(key or ALPACA_SECRET), url,
                              feed, deadline)

    def statuses(self) -> list[int]:
        return [r.status for r in self.fake.requests]

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests' arrivals."""
        times = [r.time for r in self.fake.requests]
        return [b - a for a, b in itertools.pairwise(times)]

    def raw_daily_closes(self, symbol: str, first: dt.date, last: dt.date) -> list[Decimal]:
        """Unadjusted daily closes, asked for over the provider's protocol directly."""
        if self.name == "polygon":
            url = (f"{self.fake.url}/v2/aggs/ticker/{symbol}/range/1/day/{first}/{last}?"
                   + urlencode({"adjusted": "false", "apiKey": POLYGON_KEY}))
            return [r["c"] for r in _get_json(url, {})["results"]]
        query = urlencode({"symbols": symbol, "timeframe": "1Day", "adjustment": "raw",
                           "feed": "iex", "start": f"{first}T04:00:00Z",
                           "end": f"{last}T23:59:59Z"})
        answer = _get_json(f"{self.fake.url}/v2/stocks/bars?{query}",
                           {"APCA-API-KEY-ID": ALPACA_KEY_ID,
                            "APCA-API-SECRET-KEY": ALPACA_SECRET})
        return [b["c"] for b in answer["bars"][symbol]]


def _get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        parsed: dict[str, Any] = json.loads(r.read(), parse_float=Decimal)
        return parsed


@pytest.fixture(params=["polygon", "alpaca"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    fake = FakePolygon(POLYGON_KEY) if request.param == "polygon" else \
        FakeAlpaca(ALPACA_KEY_ID, ALPACA_SECRET)
    with fake:
        yield Harness(request.param, fake)


def expected(bars: list[FakeBar]) -> list[Bar]:
    return [Bar(b.start, b.open, b.high, b.low, b.close, b.volume) for b in bars]


def daily(market: Market, symbol: str, *days: dt.date, adjusted: bool = True
          ) -> list[FakeBar]:
    """The daily bars the market has on these days (a day without one has none)."""
    return [b for d in days if (b := market.daily_bar(symbol, d, adjusted=adjusted))]


def at(day: dt.date, hour: int, minute: int) -> dt.datetime:
    """A New York wall-clock time, in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK).astimezone(UTC)


def no_secret_in(exc: BaseException) -> bool:
    text = "".join(traceback.format_exception(exc))
    return not any(secret in text for secret in SECRETS)


# -- bars ------------------------------------------------------------------------------


def test_a_full_session_has_every_minute_from_pre_to_post_market(harness: Harness) -> None:
    bars = harness.provider().fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_2)

    assert bars == expected(harness.market.minute_bars("AAPL", JUNE_2))
    assert len(bars) == 16 * 60  # 04:00 to 20:00 New York
    assert bars[0].time == dt.datetime(2025, 6, 2, 8, 0, tzinfo=UTC)  # 04:00 EDT
    assert bars[-1].time == dt.datetime(2025, 6, 2, 23, 59, tzinfo=UTC)  # 19:59 EDT
    assert all(b.time.tzinfo is UTC for b in bars)
    assert all(isinstance(v, Decimal) for b in bars
               for v in (b.open, b.high, b.low, b.close, b.volume))
    opening = next(b for b in bars if b.time == at(JUNE_2, 9, 30))
    truth = Market.minute_bar("AAPL", at(JUNE_2, 9, 30))
    assert (opening.open, opening.close, opening.volume) == (truth.open, truth.close,
                                                             truth.volume)
    [sent] = harness.fake.requests
    if harness.name == "polygon":
        assert sent.path == "/v2/aggs/ticker/AAPL/range/1/minute/2025-06-02/2025-06-02"
        assert sent.params == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    else:
        assert sent.path == "/v2/stocks/bars"
        assert sent.params == {"symbols": "AAPL", "timeframe": "1Min", "adjustment": "split",
                               "feed": "iex", "start": "2025-06-02T04:00:00+00:00",
                               "end": "2025-06-03T03:59:59+00:00", "limit": "10000"}


def test_a_half_day_ends_four_hours_after_its_1300_close(harness: Harness) -> None:
    wednesday, friday = dt.date(2024, 11, 27), dt.date(2024, 11, 29)  # Thanksgiving between
    bars = harness.provider().fetch("MSFT", Interval.MINUTE, wednesday, friday)

    assert bars == expected(harness.market.minute_bars("MSFT", wednesday)
                            + harness.market.minute_bars("MSFT", friday))
    per_day: dict[dt.date, int] = {}
    for bar in bars:
        day = bar.time.astimezone(NEW_YORK).date()
        per_day[day] = per_day.get(day, 0) + 1
    assert per_day == {wednesday: 960, friday: 13 * 60}  # no bar on the holiday
    assert bars[-1].time == at(friday, 16, 59) == dt.datetime(2024, 11, 29, 21, 59, tzinfo=UTC)
    assert at(friday, 12, 59) in {b.time for b in bars}  # the last regular minute


def test_gaps_and_days_without_data_are_missing_bars(harness: Harness) -> None:
    missing = (dt.time(9, 30), dt.time(9, 31), dt.time(15, 59))
    harness.market.gap("AAPL", JUNE_3, *missing)
    harness.market.no_data("AAPL", JUNE_4)

    bars = harness.provider().fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_4)

    assert bars == expected(harness.market.minute_bars("AAPL", JUNE_2)
                            + harness.market.minute_bars("AAPL", JUNE_3))
    assert len(bars) == 960 + 957
    times = {b.time for b in bars}
    assert not times & {at(JUNE_3, t.hour, t.minute) for t in missing}
    assert {at(JUNE_3, 9, 29), at(JUNE_3, 9, 32), at(JUNE_3, 16, 0)} <= times
    assert not [b for b in bars if b.time.astimezone(NEW_YORK).date() == JUNE_4]


def test_daily_bars_across_a_split_are_adjusted(harness: Harness) -> None:
    harness.market.split("AAPL", JUNE_4, 4)
    first, last = JUNE_2, dt.date(2025, 6, 6)

    bars = harness.provider().fetch("AAPL", Interval.DAY, first, last)

    days = [dt.date(2025, 6, d) for d in range(2, 7)]
    assert bars == expected(daily(harness.market, "AAPL", *days))
    assert [b.time for b in bars] == [dt.datetime(2025, 6, d, 4, 0, tzinfo=UTC)
                                      for d in range(2, 7)]  # midnight New York
    closes = [b.close for b in bars]
    assert all(abs(b / a - 1) < Decimal("0.05") for a, b in itertools.pairwise(closes))
    raw = harness.raw_daily_closes("AAPL", first, last)
    assert raw == [4 * c for c in closes[:2]] + closes[2:]  # the raw series jumps 4x
    [unadjusted] = daily(harness.market, "AAPL", JUNE_2, adjusted=False)
    assert bars[0].volume == 4 * unadjusted.volume  # adjusted volume: 4x the shares


def test_an_unknown_symbol_has_no_bars(harness: Harness) -> None:
    assert harness.provider().fetch("ZZZZ", Interval.MINUTE, JUNE_2, JUNE_3) == []
    assert harness.statuses() == [200]


def test_every_page_is_fetched(harness: Harness) -> None:
    harness.fake.page_size = 100

    bars = harness.provider().fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_2)

    assert bars == expected(harness.market.minute_bars("AAPL", JUNE_2))
    sent = harness.fake.requests
    assert len(sent) == 10  # 960 bars, 100 a page
    if harness.name == "polygon":  # next_url: the cursor alone carries the query
        assert all(set(r.params) == {"cursor"} for r in sent[1:])
        assert {r.path for r in sent} == {sent[0].path}
    else:
        assert "page_token" not in sent[0].params
        tokens = [r.params["page_token"] for r in sent[1:]]
        assert len(set(tokens)) == 9
        assert all(r.params["limit"] == "10000" and r.params["symbols"] == "AAPL"
                   for r in sent)


# -- retries ---------------------------------------------------------------------------


def test_a_429_waits_for_retry_after_then_succeeds(harness: Harness) -> None:
    harness.fake.fail_next(1, 429, retry_after=1)
    started = time.monotonic()

    bars = harness.provider().fetch("AAPL", Interval.DAY, JUNE_2, JUNE_4)

    assert time.monotonic() - started < 2.0
    assert bars == expected(daily(harness.market, "AAPL", JUNE_2, JUNE_3, JUNE_4))
    assert harness.statuses() == [429, 200]
    [gap] = harness.gaps()
    assert 1.0 <= gap < 1.5  # Retry-After honoured, and nothing added to it


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried_at_once(harness: Harness, status: int) -> None:
    harness.fake.fail_next(1, status)

    bars = harness.provider().fetch("MSFT", Interval.MINUTE, JUNE_2, JUNE_2)

    assert bars == expected(harness.market.minute_bars("MSFT", JUNE_2))
    assert harness.statuses() == [status, 200]
    assert harness.gaps()[0] < 0.5


def test_repeated_failures_back_off_exponentially(harness: Harness) -> None:
    harness.fake.fail_next(2, 503)

    bars = harness.provider().fetch("MSFT", Interval.DAY, JUNE_2, JUNE_2)

    assert bars == expected(daily(harness.market, "MSFT", JUNE_2))
    assert harness.statuses() == [503, 503, 200]
    first, second = harness.gaps()
    assert first < 0.5 and 1.0 <= second < 1.5  # 0 s, then 0.5 x 2


def test_the_deadline_ends_retrying_under_repeated_429(harness: Harness) -> None:
    harness.fake.fail_next(50, 429, retry_after=1)
    started = time.monotonic()

    with pytest.raises(ProviderUnavailable) as raised:
        harness.provider(deadline=2.5).fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_2)

    assert time.monotonic() - started < 2.5  # gave up before the deadline, not after it
    assert harness.statuses() == [429, 429, 429]  # at 0 s, 1 s, 2 s: a 4th would be at 3 s
    assert str(raised.value) == (
        f"{harness.name} did not answer within 2.5 s: 429 Too Many Requests "
        "(3 attempts, the next after 1 s would pass the deadline)")


def test_a_retry_after_past_the_deadline_fails_at_once(harness: Harness) -> None:
    harness.fake.fail_next(1, 429, retry_after=3600)
    started = time.monotonic()

    with pytest.raises(ProviderUnavailable) as raised:
        harness.provider(deadline=300).fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_2)

    assert time.monotonic() - started < 1.0
    assert harness.statuses() == [429]
    assert str(raised.value) == (
        f"{harness.name} did not answer within 300 s: 429 Too Many Requests "
        "(1 attempt, the next after 3600 s would pass the deadline)")


def test_an_unreachable_provider_is_unavailable_by_the_deadline(harness: Harness) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()

    with pytest.raises(ProviderUnavailable) as raised:
        harness.provider(deadline=1.5, url=dead).fetch("AAPL", Interval.DAY, JUNE_2, JUNE_2)

    assert 1.0 <= time.monotonic() - started < 1.5  # tried at 0 s, 0 s and 1 s
    assert str(raised.value) == (
        f"{harness.name} did not answer within 1.5 s: NewConnectionError: [Errno 111] "
        "Connection refused (3 attempts, the next after 2 s would pass the deadline)")


# -- refusals --------------------------------------------------------------------------


def test_a_wrong_key_is_refused_at_once(harness: Harness) -> None:
    with pytest.raises(ProviderRefused) as raised:
        harness.provider(key=WRONG_KEY).fetch("AAPL", Interval.MINUTE, JUNE_2, JUNE_2)

    assert harness.statuses() == [401]
    assert no_secret_in(raised.value)
    if harness.name == "polygon":
        assert str(raised.value) == (
            "polygon refused the request for AAPL 1m bars 2025-06-02..2025-06-02 "
            "(Unknown API Key): check TICKRUN_POLYGON_API_KEY")
    else:
        assert str(raised.value) == (
            "alpaca refused the request for AAPL 1m bars 2025-06-02..2025-06-02 (feed iex) "
            "(401: request is not authorized): check TICKRUN_ALPACA_API_KEY_ID and "
            "TICKRUN_ALPACA_API_SECRET_KEY")


def test_a_plan_without_the_data_is_refused_at_once(harness: Harness) -> None:
    if isinstance(harness.fake, FakePolygon):
        harness.fake.entitled = False
    else:
        harness.fake.feeds = {"iex"}

    with pytest.raises(ProviderRefused) as raised:
        harness.provider(feed="sip").fetch("AAPL", Interval.DAY, JUNE_2, JUNE_2)

    assert harness.statuses() == [403]
    assert no_secret_in(raised.value)
    if harness.name == "polygon":
        assert str(raised.value) == (
            "polygon refused the request for AAPL 1d bars 2025-06-02..2025-06-02 "
            "(NOT_AUTHORIZED: You are not entitled to this data. Please upgrade your plan at "
            "https://polygon.io/pricing): the plan of the key in TICKRUN_POLYGON_API_KEY "
            "does not include this data")
    else:
        assert str(raised.value) == (
            "alpaca refused the request for AAPL 1d bars 2025-06-02..2025-06-02 (feed sip) "
            "(403: subscription does not permit querying recent SIP data): check "
            "TICKRUN_ALPACA_API_KEY_ID and TICKRUN_ALPACA_API_SECRET_KEY, and that the "
            "account's data plan covers feed sip (TICKRUN_ALPACA_FEED)")


# -- the factory -----------------------------------------------------------------------


def _settings(**values: Any) -> MarketDataSettings:
    """Settings from these values alone (keys in the environment do not count)."""
    blank: dict[str, Any] = {"polygon_api_key": None, "alpaca_api_key_id": None,
                             "alpaca_api_secret_key": None}
    return MarketDataSettings(**{**blank, **values})


def test_build_provider_names_the_settings_to_set() -> None:
    with pytest.raises(ProviderRefused, match=r"^polygon is not configured: set "
                                              r"TICKRUN_POLYGON_API_KEY$"):
        build_provider("polygon", _settings())
    with pytest.raises(ProviderRefused, match=r"^alpaca is not configured: set "
                                              r"TICKRUN_ALPACA_API_SECRET_KEY$"):
        build_provider("alpaca", _settings(alpaca_api_key_id=ALPACA_KEY_ID,
                                           alpaca_api_secret_key="  "))


def test_build_provider_points_the_provider_at_its_settings(harness: Harness) -> None:
    settings = _settings(polygon_api_key=POLYGON_KEY, polygon_base_url=harness.fake.url,
                         alpaca_api_key_id=ALPACA_KEY_ID, alpaca_api_secret_key=ALPACA_SECRET,
                         alpaca_data_url=harness.fake.url, alpaca_feed="iex")
    provider = build_provider("polygon" if harness.name == "polygon" else "alpaca", settings)

    assert provider.source == harness.name
    assert provider.fetch("MSFT", Interval.DAY, JUNE_2, JUNE_2) == expected(
        daily(harness.market, "MSFT", JUNE_2))
    assert not any(secret in repr(provider) for secret in SECRETS)
