"""Bars from Alpaca's market data API through its official client, `alpaca-py`.

One fetch is one `get_stock_bars` call (GET /v2/stocks/bars?symbols=..., split-adjusted,
from the configured feed) over whole New York days, extended hours included; the client
follows `next_page_token` itself, 10 000 bars a page. Each fetch builds its own client so
that its requests session carries that fetch's retry policy and deadline.

What the client does on its own, and how it is steered here:
- its own retry loop sleeps a fixed 3 s on 429/504, three times, with no deadline: it
  is switched off, and urllib3 retries instead (`DeadlineRetry`, mounted on the
  client's session through an HTTPAdapter), so an exhausted 429 or 5xx surfaces as a
  requests RetryError, never as an APIError;
- requests waits forever for an answer unless told otherwise: the adapter sets the
  connect/read timeouts on every request;
- every other non-2xx raises `APIError` (its `status_code` and the JSON body's message).

`session` does this steering and the mapping of failures for any of alpaca-py's data
clients: the research provider's news client (core.research.providers.alpaca) uses it too.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

with warnings.catch_warnings():
    # alpaca.data imports alpaca.trading, whose stream module imports websockets' legacy
    # client: a DeprecationWarning about code that is not ours and not used here (and an
    # error under pytest's -W error).
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated",
                            category=DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.common.rest import RESTClient
    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from core.bars import Bar
from core.errors import ProviderRefused, ProviderUnavailable
from core.marketdata.providers.base import BarProvider, Interval
from core.marketdata.providers.retry import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    DeadlineRetry,
    gave_up,
    retry_policy,
)

KEY_SETTINGS = "TICKRUN_ALPACA_API_KEY_ID and TICKRUN_ALPACA_API_SECRET_KEY"
FEED_SETTING = "TICKRUN_ALPACA_FEED"
NEW_YORK = ZoneInfo("America/New_York")
_UNITS = {Interval.MINUTE: TimeFrameUnit.Minute, Interval.DAY: TimeFrameUnit.Day}
Client = TypeVar("Client", bound=RESTClient)


class _PolicyAdapter(HTTPAdapter):
    """An HTTPAdapter that retries by the fetch's policy and never waits unbounded."""

    def __init__(self, retry: DeadlineRetry, timeout: tuple[float, float]) -> None:
        super().__init__(max_retries=retry)
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        return super().send(request, stream, self._timeout if timeout is None else timeout,
                            verify, cert, proxies)


class AlpacaProvider(BarProvider):
    source = "alpaca"

    def __init__(self, key_id: SecretStr, secret_key: SecretStr, data_url: str, feed: str,
                 deadline_seconds: float) -> None:
        try:
            self._feed = DataFeed(feed)
        except ValueError:
            raise ProviderRefused(
                f"alpaca has no feed {feed!r}: check {FEED_SETTING} (iex or sip)") from None
        self._key_id = key_id
        self._secret_key = secret_key
        self._data_url = data_url.rstrip("/")
        self._deadline_seconds = deadline_seconds

    def __repr__(self) -> str:
        return f"AlpacaProvider(data_url={self._data_url!r}, feed={self._feed.value!r})"

    def fetch(self, symbol: str, interval: Interval, first: dt.date,
              last: dt.date) -> list[Bar]:
        return self._bars(symbol, _request(symbol, interval, first, last, self._feed),
                          f"{symbol} {interval.value} bars {first}..{last}")

    def fetch_minutes(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[Bar]:
        request = StockBarsRequest(symbol_or_symbols=symbol, timeframe=TimeFrame(
            1, TimeFrameUnit.Minute), start=start, end=end, adjustment=Adjustment.SPLIT,
            feed=self._feed)
        return self._bars(symbol, request, f"{symbol} 1m bars {start.isoformat()}.."
                                   f"{end.isoformat()}")

    def _bars(self, symbol: str, request: StockBarsRequest, what: str) -> list[Bar]:
        """Every bar of `symbol` that `request` (of that symbol alone) lists, all pages."""
        what = f"{what} (feed {self._feed.value})"
        client = StockHistoricalDataClient(
            api_key=self._key_id.get_secret_value(),
            secret_key=self._secret_key.get_secret_value(),
            url_override=self._data_url, raw_data=True)
        advice_403 = (f"check {KEY_SETTINGS}, and that the account's data plan covers feed "
                      f"{self._feed.value} ({FEED_SETTING})")
        with session(client, what, self._deadline_seconds, (self._key_id, self._secret_key),
                     advice_403):
            raw = client.get_stock_bars(request)
        if not isinstance(raw, dict):  # raw_data=True: {symbol: [bar, ...]}
            raise ProviderUnavailable(f"alpaca's client returned {type(raw).__name__}")
        return [_bar(bar, what) for bar in raw.get(symbol) or []]


@contextmanager
def session(client: Client, what: str, deadline_seconds: float,
            secrets: Sequence[SecretStr], advice_403: str) -> Iterator[Client]:
    """`client` (built with raw_data=True) steered for one call within
    `deadline_seconds`: its own retry loop off, the call's retry policy and timeouts
    mounted on its requests session, which is closed afterwards. The call's failures
    come out as ProviderRefused / ProviderUnavailable about `what`, with `secrets`
    redacted; `advice_403` is what a refusal with 403 tells the operator to check."""
    # The client's own loop retries 429/504 only while its counter is above zero.
    client._retry = 0
    client._retry_codes = []
    timeout = (min(CONNECT_TIMEOUT, deadline_seconds), min(READ_TIMEOUT, deadline_seconds))
    adapter = _PolicyAdapter(retry_policy(deadline_seconds), timeout)
    client._session.mount("https://", adapter)
    client._session.mount("http://", adapter)
    try:
        yield client
    except APIError as exc:
        raise refusal(exc, what, secrets, advice_403) from None
    except (requests.JSONDecodeError, ValueError) as exc:  # not JSON, or not the shape
        raise ProviderUnavailable(f"alpaca sent a malformed answer for {what}: {exc}"
                                  ) from exc
    except requests.RequestException as exc:  # RetryError, ConnectionError, Timeout...
        raise ProviderUnavailable(
            f"alpaca did not answer within {deadline_seconds:g} s: {gave_up(exc)}") from exc
    finally:
        client._session.close()


def refusal(exc: APIError, what: str, secrets: Sequence[SecretStr],
            advice_403: str) -> ProviderRefused | ProviderUnavailable:
    """The error an APIError about `what` stands for, `secrets` redacted from it."""
    status = exc.status_code
    reason = _reason(exc)
    if status in (429,) or (status is not None and status >= 500):
        # not a status the policy retries (501...), or retried by no one: transient
        return ProviderUnavailable(f"alpaca answered {status} for {what} ({reason})")
    if status == 401:
        advice = f"check {KEY_SETTINGS}"
    elif status == 403:
        advice = advice_403
    else:
        advice = "the request is malformed or names data alpaca does not serve"
    message = f"alpaca refused the request for {what} ({status}: {reason}): {advice}"
    for secret in (s.get_secret_value() for s in secrets):
        if secret:
            message = message.replace(secret, "[redacted]")
    return ProviderRefused(message)


def _request(symbol: str, interval: Interval, first: dt.date, last: dt.date,
             feed: DataFeed) -> StockBarsRequest:
    """Whole New York days: 00:00 of the first to 23:59:59 of the last (pre- and
    post-market included; turning them into sessions is the caller's job)."""
    return StockBarsRequest(
        symbol_or_symbols=symbol,
        timeframe=TimeFrame(1, _UNITS[interval]),
        start=dt.datetime.combine(first, dt.time(0, 0), NEW_YORK),
        end=dt.datetime.combine(last, dt.time(23, 59, 59), NEW_YORK),
        adjustment=Adjustment.SPLIT,
        feed=feed,
    )


def _reason(exc: APIError) -> str:
    try:
        return str(exc.message)
    except (ValueError, KeyError, TypeError):  # the body was not Alpaca's JSON error
        return " ".join(str(exc).split())[:200] or "no reason given"


def _bar(raw: dict[str, Any], what: str) -> Bar:
    try:
        time = dt.datetime.fromisoformat(raw["t"]).astimezone(dt.UTC)
        return Bar(time=time, open=_decimal(raw["o"]), high=_decimal(raw["h"]),
                           low=_decimal(raw["l"]), close=_decimal(raw["c"]),
                           volume=_decimal(raw["v"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderUnavailable(f"alpaca sent a malformed bar for {what}: {exc!r}") from exc


def _decimal(value: object) -> Decimal:
    """The JSON number's own digits (str of a float is its shortest round-trip form)."""
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    return Decimal(str(value))
