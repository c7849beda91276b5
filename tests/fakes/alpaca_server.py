"""A local Alpaca market data server (GET /v2/stocks/bars, GET /v1beta1/news), serving
the same Market (and its Research news) as the Polygon fake.

The tests drive the official `alpaca-py` client against it. For one symbol or many,
alpaca-py 0.44 sends GET {url}/v2/stocks/bars with `symbols` (comma-separated),
`timeframe` (1Min, 1Day), `start`/`end` (RFC 3339, UTC offset), `adjustment`, `feed`,
`limit` (10000: the client's page size) and, from the second page on, `page_token`;
keys travel in the APCA-API-KEY-ID / APCA-API-SECRET-KEY headers. Its NewsClient sends
GET {url}/v1beta1/news with `symbols`, `start`, `end`, `sort`, `include_content`
(Python's "True"/"False"), `limit` (50: the API's maximum) and then `page_token`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.polygon_server import (
    NEW_YORK,
    Answer,
    FakeBar,
    FakeMarketServer,
    FakeNews,
    Incoming,
    Market,
    Timespan,
    body,
    decode_cursor,
    encode_cursor,
    json_number,
    new_york_midnight,
    rfc3339,
)

BARS_PATH = "/v2/stocks/bars"
NEWS_PATH = "/v1beta1/news"
ALPACA_LIMIT_MAX = 10_000
ALPACA_LIMIT_DEFAULT = 1_000
NEWS_LIMIT_MAX = 50
NEWS_LIMIT_DEFAULT = 10
# Go's strconv.ParseBool, which the API parses its flags with
_BOOLEANS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
_TIMEFRAMES: dict[str, Timespan] = {"1Min": "minute", "1T": "minute", "1Day": "day",
                                    "1D": "day"}
_ADJUSTMENTS = ("raw", "split", "dividend", "all")


class FakeAlpaca(FakeMarketServer):
    """GET /v2/stocks/bars?symbols&timeframe&start&end&adjustment&feed&limit&page_token,
    and GET /v1beta1/news?symbols&start&end&sort&limit&include_content&page_token.

    Auth: both key headers must match, else a 401 with Alpaca's body. A feed outside
    `feeds` (the plan's entitlement) is a 403. `adjustment` defaults to raw, as Alpaca's
    does; `start`/`end` are inclusive instants. A page holds min(limit, page_size) bars
    across the symbols (sorted); `next_page_token` is opaque, null on the last page.

    News: the market's Research articles tagged with any of `symbols` (all of them when
    none is named) whose time (created_at: `FakeNews.indexed_at`) is within
    [start, end], by that time (`sort` desc by default); `limit` 1..50 (default 10, more
    is a 422); `content` is "" unless include_content; ids are integers (an article
    whose id is not one gets a stable number).
    """

    name = "fake-alpaca"

    def __init__(self, key_id: str, secret_key: str, *, market: Market | None = None,
                 symbols: Iterable[str] = ("AAPL", "MSFT"), page_size: int = ALPACA_LIMIT_MAX,
                 feeds: Iterable[str] = ("iex", "sip"), host: str = "127.0.0.1") -> None:
        super().__init__(market=market, symbols=symbols, page_size=page_size, host=host)
        self.key_id = key_id
        self.secret_key = secret_key
        self.feeds = set(feeds)

    def answer(self, incoming: Incoming) -> Answer:
        headers = incoming.headers
        if (headers.get("apca-api-key-id") != self.key_id
                or headers.get("apca-api-secret-key") != self.secret_key):
            return 401, {}, body({"code": 40110000, "message": "request is not authorized"})
        incoming.authorized = True
        if incoming.path == NEWS_PATH:
            try:
                return 200, {}, body(self._news_page(incoming.params))
            except ValueError as exc:
                return 422, {}, body({"code": 42210000, "message": str(exc)})
        if incoming.path != BARS_PATH:
            return 404, {}, body({"message": "Not Found"})
        params = incoming.params
        feed = params.get("feed", "sip" if "sip" in self.feeds else "iex")
        if feed not in self.feeds:
            return 403, {}, body({"message": f"subscription does not permit querying recent "
                                             f"{feed.upper()} data"})
        try:
            return 200, {}, body(self._page(params))
        except ValueError as exc:
            return 422, {}, body({"code": 42210000, "message": str(exc)})

    def failure_body(self, status: int) -> bytes:
        if status == 429:
            return body({"code": 42910000, "message": "rate limit exceeded"})
        return body({"code": 50010000, "message": "internal server error occurred"})

    def _page(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbols = sorted({s for s in params.get("symbols", "").split(",") if s})
        if not symbols:
            raise ValueError("missing symbols")
        timespan = _TIMEFRAMES.get(params.get("timeframe", ""))
        if timespan is None:
            raise ValueError(f"invalid timeframe: {params.get('timeframe')!r}")
        adjustment = params.get("adjustment", "raw")
        if adjustment not in _ADJUSTMENTS:
            raise ValueError(f"invalid adjustment: {adjustment!r}")
        start, end = _range(params)
        limit = int(params.get("limit", ALPACA_LIMIT_DEFAULT))
        if not 1 <= limit <= ALPACA_LIMIT_MAX:
            raise ValueError(f"invalid limit: must be between 1 and {ALPACA_LIMIT_MAX}")
        offset = int(decode_cursor(params["page_token"])["offset"]) \
            if params.get("page_token") else 0
        every = [(symbol, bar) for symbol in symbols
                 for bar in self.market.bars(symbol, timespan, start, end,
                                             adjusted=adjustment != "raw")]
        size = min(limit, self.page_size)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in every[offset:offset + size]:
            grouped.setdefault(symbol, []).append(_alpaca_bar(bar))
        more = offset + size < len(every)
        return {"bars": grouped,
                "next_page_token": encode_cursor({"offset": offset + size}) if more else None}

    def _news_page(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbols = {s for s in params.get("symbols", "").split(",") if s}
        start, end = _range(params)
        sort = params.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ValueError(f"invalid sort: {sort!r}")
        limit = int(params.get("limit", NEWS_LIMIT_DEFAULT))
        if not 1 <= limit <= NEWS_LIMIT_MAX:
            raise ValueError(f"invalid limit: must be between 1 and {NEWS_LIMIT_MAX}")
        content = _flag(params, "include_content")
        contentless = not _flag(params, "exclude_contentless")
        found = sorted((item for item in self.market.research.news
                        if item.indexed_at is not None and start <= item.indexed_at < end
                        and (not symbols or symbols & set(item.tickers))
                        and (contentless or item.content)),
                       key=lambda item: (item.indexed_at, item.id), reverse=sort == "desc")
        offset = int(decode_cursor(params["page_token"])["offset"]) \
            if params.get("page_token") else 0
        size = min(limit, self.page_size)
        more = offset + size < len(found)
        return {"news": [_alpaca_news(item, content) for item in found[offset:offset + size]],
                "next_page_token": encode_cursor({"offset": offset + size}) if more else None}


def _flag(params: Mapping[str, str], name: str) -> bool:
    text = params.get(name, "false")
    if text not in _BOOLEANS:
        raise ValueError(f"invalid {name}: {text!r}")
    return _BOOLEANS[text]


def _alpaca_news(item: FakeNews, content: bool) -> dict[str, Any]:
    """Alpaca's article (alpaca.data.models.news.News): an integer id, created_at and
    updated_at in RFC 3339 (a string `published` verbatim; none: both left out)."""
    identifier = int(item.id) if item.id.isdigit() else _digest_id(item.id)
    rendered: dict[str, Any] = {
        "id": identifier, "headline": item.title, "author": item.author or "",
        "summary": item.description or "", "content": item.content if content else "",
        "images": [], "symbols": list(item.tickers), "source": item.publisher or "",
        "url": item.url}
    if item.published is not None:
        created = item.published if isinstance(item.published, str) else \
            rfc3339(item.published)
        rendered["created_at"] = rendered["updated_at"] = created
    return rendered


def _digest_id(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _range(params: Mapping[str, str]) -> tuple[dt.datetime, dt.datetime]:
    """[start, end + 1 µs): Alpaca's start and end are both inclusive. Defaults: the
    start of today in New York, and now."""
    start = (_parse_time(params["start"]) if params.get("start")
             else new_york_midnight(dt.datetime.now(NEW_YORK).date()))
    end = _parse_time(params["end"]) if params.get("end") else dt.datetime.now(dt.UTC)
    if end < start:
        raise ValueError("end should not be before start")
    return start, end + dt.timedelta(microseconds=1)


def _parse_time(text: str) -> dt.datetime:
    """RFC 3339 (an offset or Z), or a date (its midnight UTC)."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid time: {text!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _alpaca_bar(bar: FakeBar) -> dict[str, Any]:
    return {"t": bar.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "o": json_number(bar.open),
            "h": json_number(bar.high), "l": json_number(bar.low),
            "c": json_number(bar.close), "v": json_number(bar.volume), "n": bar.trades,
            "vw": json_number(bar.vwap)}
