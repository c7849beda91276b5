"""Bars from Massive (formerly Polygon.io) through its official client, `massive`.

One fetch is one `list_aggs` listing (1-minute or 1-day aggregates, split-adjusted, oldest
first, 50 000 a page); the client follows `next_url` itself. Each fetch builds its own
client so that its urllib3 pool carries that fetch's retry policy and deadline.

What the client does on its own, and how it is steered here:
- a non-200 that urllib3 did not retry raises `BadResponse(body)`, with no status code:
  the body's status/error fields say what went wrong (a refusal, never retried);
- 429/5xx/connection failures are retried inside urllib3 by `DeadlineRetry`, and one
  that outlasts the deadline raises MaxRetryError (never reaches the client as data);
- a page body that is not JSON would make the client end the listing silently (it
  catches ValueError): the JSON module handed to it raises a non-ValueError instead,
  and it parses prices straight to Decimal (no float on the way).

`session` builds such a client for one call and maps its failures; the research provider
(core.research.providers.polygon) uses it too.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from massive import RESTClient
from massive.exceptions import BadResponse
from pydantic import SecretStr
from urllib3.exceptions import HTTPError

from core.bars import Bar
from core.errors import ProviderRefused, ProviderUnavailable
from core.marketdata.providers.base import BarProvider, Interval
from core.marketdata.providers.retry import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    gave_up,
    retry_policy,
)

KEY_SETTING = "TICKRUN_POLYGON_API_KEY"
PAGE_LIMIT = 50_000  # the API's maximum: a month of extended-hours minutes in one page
_TIMESPANS = {Interval.MINUTE: "minute", Interval.DAY: "day"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class MalformedAnswer(Exception):
    """A body that is not the JSON expected. Deliberately not a ValueError: massive
    swallows ValueError while decoding a page and ends the listing as if complete."""


class ExactJson:
    """The JSON module massive decodes with (its `custom_json`)."""

    @staticmethod
    def loads(text: str) -> Any:
        try:
            return json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise MalformedAnswer(f"a body that is not JSON ({len(text)} characters)") from exc


class PolygonProvider(BarProvider):
    source = "polygon"

    def __init__(self, api_key: SecretStr, base_url: str, deadline_seconds: float) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._deadline_seconds = deadline_seconds

    def __repr__(self) -> str:
        return f"PolygonProvider(base_url={self._base_url!r})"

    def fetch(self, symbol: str, interval: Interval, first: dt.date,
              last: dt.date) -> list[Bar]:
        what = f"{symbol} {interval.value} bars {first}..{last}"
        with session(self._api_key, self._base_url, self._deadline_seconds, what) as client:
            # Dates (not timestamps) select whole New York days, extended hours included.
            aggs = client.list_aggs(symbol, 1, _TIMESPANS[interval], first.isoformat(),
                                    last.isoformat(), adjusted=True, sort="asc",
                                    limit=PAGE_LIMIT)
            return [_bar(agg) for agg in aggs]

    def fetch_minutes(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[Bar]:
        what = f"{symbol} 1m bars {start.isoformat()}..{end.isoformat()}"
        with session(self._api_key, self._base_url, self._deadline_seconds, what) as client:
            # Datetimes go as Unix milliseconds: an inclusive range of bar starts.
            aggs = client.list_aggs(symbol, 1, "minute", start, end, adjusted=True,
                                    sort="asc", limit=PAGE_LIMIT)
            return [_bar(agg) for agg in aggs]


@contextmanager
def session(api_key: SecretStr, base_url: str, deadline_seconds: float,
            what: str) -> Iterator[Any]:
    """A client for one call about `what` within `deadline_seconds`: its urllib3 pools
    (the client's and its `vx` sub-client's) retry by the call's policy and are closed
    afterwards; its failures (also while a listing is iterated) come out as
    ProviderRefused / ProviderUnavailable, the key redacted."""
    client = RESTClient(
        api_key=api_key.get_secret_value(),
        base=base_url,
        connect_timeout=min(CONNECT_TIMEOUT, deadline_seconds),
        read_timeout=min(READ_TIMEOUT, deadline_seconds),
        pagination=True,
        custom_json=ExactJson,
        # replaces the client's own Retry (3 tries, 0.1 s backoff, no deadline)
        connection_pool_kw={"retries": retry_policy(deadline_seconds)},
    )
    try:
        yield client
    except BadResponse as exc:
        raise _refused(str(exc), what, api_key) from None
    except HTTPError as exc:
        raise ProviderUnavailable(
            f"polygon did not answer within {deadline_seconds:g} s: {gave_up(exc)}") from exc
    except MalformedAnswer as exc:
        raise ProviderUnavailable(f"polygon sent {exc} for {what}") from exc
    finally:
        client.client.clear()  # close this call's connections
        client.vx.client.clear()


def _refused(body: str, what: str, api_key: SecretStr) -> ProviderRefused:
    status, reason = _error_of(body)
    if status == "NOT_AUTHORIZED":
        advice = f"the plan of the key in {KEY_SETTING} does not include this data"
    elif "key" in reason.lower():
        advice = f"check {KEY_SETTING}"
    else:
        advice = "the request is malformed or names data polygon does not serve"
    detail = f"{status}: {reason}" if status not in ("", "ERROR") else reason
    message = f"polygon refused the request for {what} ({detail}): {advice}"
    key = api_key.get_secret_value()
    return ProviderRefused(message.replace(key, "[redacted]") if key else message)


def _error_of(body: str) -> tuple[str, str]:
    """(status, reason) of an error body: {"status": "ERROR", "error": "Unknown API Key"}
    or {"status": "NOT_AUTHORIZED", "message": "You are not entitled to this data..."}."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return "", " ".join(body.split())[:200] or "an empty answer"
    reason = parsed.get("error") or parsed.get("message") or "no reason given"
    return str(parsed.get("status") or ""), str(reason)


def _bar(agg: Any) -> Bar:
    if agg.timestamp is None:
        raise MalformedAnswer("a bar without a timestamp")
    return Bar(
        time=_EPOCH + dt.timedelta(milliseconds=int(agg.timestamp)),
        open=_decimal(agg.open), high=_decimal(agg.high), low=_decimal(agg.low),
        close=_decimal(agg.close), volume=_decimal(agg.volume))


def _decimal(value: object) -> Decimal:
    """Decimal from the JSON number (already Decimal for fractions, int for integers)."""
    if value is None:
        raise MalformedAnswer("a bar without a price or volume")
    return value if isinstance(value, Decimal) else Decimal(str(value))
