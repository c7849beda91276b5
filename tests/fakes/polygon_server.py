"""A local Massive (formerly Polygon.io) aggregates server, and the market both fakes serve.

The tests drive the official `massive` client against it, so what is tested is what runs
in production: paths, query parameters, bearer auth, `next_url` pagination, the error
bodies the client turns into exceptions, urllib3's retries.

`Market` is the truth both this fake and the Alpaca fake (alpaca_server.py) serve: every
bar is a pure function of (symbol, bar start), so a test computes the exact values it
expects. Minute bars cover 04:00 New York to four hours after the close (20:00, or 17:00
on a half day) on XNYS sessions (core.calendar); daily bars are stamped midnight New
York. Knobs: gaps, days without data, splits (raw prices before the split date are
ratio x adjusted). `FakeMarketServer` is the HTTP side both fakes share: scripted
failures, every request recorded (thread-safe), start/close or a `with` block.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from core.calendar import is_session, session_minutes

NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET_OPEN = dt.time(4, 0)
POST_MARKET_HOURS = dt.timedelta(hours=4)  # after the close: 20:00, or 17:00 on a half day
Timespan = Literal["minute", "day"]
Answer = tuple[int, dict[str, str], bytes]  # status, extra headers, JSON body

# -- the market ------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeBar:
    """One bar as the fakes serve it; `start` is timezone-aware UTC."""

    start: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal
    trades: int

    def scaled(self, price: Decimal, volume: Decimal) -> FakeBar:
        return FakeBar(self.start, self.open * price, self.high * price, self.low * price,
                       self.close * price, self.volume * volume, self.vwap * price, self.trades)


@lru_cache(maxsize=16_384)  # 20 years of sessions: a long daily range stays cached
def trading_minutes(day: dt.date) -> tuple[dt.datetime, ...]:
    """Every minute bar start (UTC) a session has, pre- and post-market included."""
    if not is_session(day):
        return ()
    regular = session_minutes(day)
    opened = dt.datetime.combine(day, PRE_MARKET_OPEN, NEW_YORK).astimezone(dt.UTC)
    closed = regular[-1].astimezone(dt.UTC) + dt.timedelta(minutes=1) + POST_MARKET_HOURS
    count = int((closed - opened).total_seconds() // 60)
    return tuple(opened + dt.timedelta(minutes=i) for i in range(count))


@lru_cache(maxsize=16_384)  # 20 years of sessions: a long daily range stays cached
def _regular(day: dt.date) -> frozenset[dt.datetime]:
    return frozenset(t.astimezone(dt.UTC) for t in session_minutes(day))


def new_york_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), NEW_YORK).astimezone(dt.UTC)


class Market:
    """Deterministic bars for a set of known symbols; any other symbol has none.

    Configure it before requests arrive (the servers only read it)."""

    def __init__(self, symbols: Iterable[str] = ("AAPL", "MSFT")) -> None:
        self.symbols = set(symbols)
        self._gaps: dict[tuple[str, dt.date], set[dt.time]] = {}
        self._empty: set[tuple[str, dt.date]] = set()
        self._splits: dict[str, dict[dt.date, Decimal]] = {}

    # -- knobs -------------------------------------------------------------------------
    def gap(self, symbol: str, day: dt.date, *times: dt.time) -> None:
        """No minute bar for `symbol` at these New York times of `day` (no trade then)."""
        self._gaps.setdefault((symbol, day), set()).update(times)

    def no_data(self, symbol: str, day: dt.date) -> None:
        """No bar at all (minute or daily) for `symbol` on `day` (halted, not listed yet)."""
        self._empty.add((symbol, day))

    def split(self, symbol: str, day: dt.date, ratio: Decimal | int | str) -> None:
        """A `ratio`-for-1 split effective on `day`: unadjusted prices before it are
        ratio x the adjusted ones (and unadjusted volumes 1/ratio of them)."""
        self._splits.setdefault(symbol, {})[day] = Decimal(ratio)

    # -- the truth ---------------------------------------------------------------------
    def minute_bars(self, symbol: str, day: dt.date, *, adjusted: bool = True
                    ) -> list[FakeBar]:
        if not self._has_data(symbol, day):
            return []
        gaps = self._gaps.get((symbol, day), set())
        return [self._adjust(symbol, day, self.minute_bar(symbol, start), adjusted)
                for start in trading_minutes(day)
                if start.astimezone(NEW_YORK).time() not in gaps]

    def daily_bar(self, symbol: str, day: dt.date, *, adjusted: bool = True
                  ) -> FakeBar | None:
        if not self._has_data(symbol, day) or not trading_minutes(day):
            return None
        bar = _generate(symbol, new_york_midnight(day), "day", volume_scale=1000)
        return self._adjust(symbol, day, bar, adjusted)

    def bars(self, symbol: str, timespan: Timespan, start: dt.datetime, end: dt.datetime,
             *, adjusted: bool = True) -> list[FakeBar]:
        """Every bar starting in [start, end), oldest first."""
        first = start.astimezone(NEW_YORK).date()
        last = (end - dt.timedelta(microseconds=1)).astimezone(NEW_YORK).date()
        found: list[FakeBar] = []
        day = first
        while day <= last:
            if timespan == "minute":
                found.extend(self.minute_bars(symbol, day, adjusted=adjusted))
            elif (daily := self.daily_bar(symbol, day, adjusted=adjusted)) is not None:
                found.append(daily)
            day += dt.timedelta(days=1)
        return [bar for bar in found if start <= bar.start < end]

    @staticmethod
    def minute_bar(symbol: str, start: dt.datetime) -> FakeBar:
        """The split-adjusted bar at `start` (regardless of gaps and sessions); regular
        hours trade ten times the volume of the extended ones."""
        start = start.astimezone(dt.UTC)
        day = start.astimezone(NEW_YORK).date()
        scale = 10 if is_session(day) and start in _regular(day) else 1
        return _generate(symbol, start, "minute", volume_scale=scale)

    def _has_data(self, symbol: str, day: dt.date) -> bool:
        return symbol in self.symbols and (symbol, day) not in self._empty

    def _adjust(self, symbol: str, day: dt.date, bar: FakeBar, adjusted: bool) -> FakeBar:
        """Generated prices are adjusted and volumes raw: a bar before a split is scaled
        one way or the other, both exactly."""
        factor = Decimal(1)
        for split_day, ratio in self._splits.get(symbol, {}).items():
            if day < split_day:
                factor *= ratio
        if factor == 1:
            return bar
        return bar.scaled(Decimal(1), factor) if adjusted else bar.scaled(factor, Decimal(1))


def _generate(symbol: str, start: dt.datetime, kind: str, *, volume_scale: int) -> FakeBar:
    """Prices within 5.00 of the symbol's level (50 to 449), cents; whole-share volumes."""
    level = Decimal(50 + _digest(f"level|{symbol}") % 400)
    h = _digest(f"{kind}|{symbol}|{start.isoformat()}")
    h, a = divmod(h, 1001)
    h, b = divmod(h, 1001)
    h, c = divmod(h, 51)
    h, d = divmod(h, 51)
    h, v = divmod(h, 10_000)
    h, n = divmod(h, 100)
    opened = level + Decimal(a - 500).scaleb(-2)
    closed = level + Decimal(b - 500).scaleb(-2)
    high = max(opened, closed) + Decimal(c).scaleb(-2)
    low = min(opened, closed) - Decimal(d).scaleb(-2)
    vwap = ((opened + high + low + closed) / 4).quantize(Decimal("0.0001"))
    return FakeBar(start, opened, high, low, closed, Decimal((v + 100) * volume_scale), vwap,
                   n + 1)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def json_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number with the same digits (a float's repr is the shortest
    string that round-trips, so 153.27 is written 153.27)."""
    return int(value) if value == value.to_integral_value() else float(value)


# -- the HTTP side both fakes share ----------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One request as a fake saw it (query parameters, not headers: no keys)."""

    path: str
    params: dict[str, str]
    time: float  # time.monotonic() on arrival
    status: int
    authorized: bool


@dataclass(frozen=True)
class Failure:
    status: int
    retry_after: int | None = None


@dataclass
class Incoming:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    host: str  # the Host header: where the client reached this server
    authorized: bool = field(default=False)


class FakeMarketServer:
    """Serves a Market over HTTP; subclasses speak one provider's protocol."""

    name = "fake-market"

    def __init__(self, *, market: Market | None = None, symbols: Iterable[str] = ("AAPL", "MSFT"),
                 page_size: int = 50_000, host: str = "127.0.0.1") -> None:
        self.market = market or Market(symbols)
        self.page_size = page_size
        self.host = host
        self._recorded: list[Recorded] = []
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=self.name)

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL from this machine (a pod uses url_for with the node's address)."""
        return self.url_for("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host)

    def url_for(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start() if not self._thread.is_alive() else self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- knobs and records -------------------------------------------------------------
    def fail_next(self, count: int, status: int = 429, *, retry_after: int | None = None
                  ) -> None:
        """The next `count` requests (any path, any key) answer `status`, with a
        Retry-After header of `retry_after` seconds when given."""
        with self._lock:
            self._failures.extend(Failure(status, retry_after) for _ in range(count))

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._recorded)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._recorded)

    def request_id(self) -> str:
        return f"{next(self._ids):032x}"

    # -- answering ---------------------------------------------------------------------
    def _serve(self, incoming: Incoming) -> Answer:
        arrived = time.monotonic()
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            headers = ({"Retry-After": str(failure.retry_after)}
                       if failure.retry_after is not None else {})
            answer: Answer = (failure.status, headers, self.failure_body(failure.status))
        else:
            answer = self.answer(incoming)
        with self._lock:
            self._recorded.append(Recorded(incoming.path, dict(incoming.params), arrived,
                                           answer[0], incoming.authorized))
        return answer

    def answer(self, incoming: Incoming) -> Answer:
        raise NotImplementedError

    def failure_body(self, status: int) -> bytes:
        raise NotImplementedError


def body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def encode_cursor(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    state = json.loads(base64.urlsafe_b64decode(padded))
    if not isinstance(state, dict):
        raise ValueError("not a cursor")
    return state


def _handler_for(fake: FakeMarketServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm
            # holds the body for the client's delayed ACK (~40 ms a request).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            incoming = Incoming(
                path=parts.path, params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                host=self.headers.get("host") or f"127.0.0.1:{fake.port}")
            self._send(*fake._serve(incoming))

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# -- Massive / Polygon -----------------------------------------------------------------

_AGGS = re.compile(r"/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<multiplier>\d+)/"
                   r"(?P<timespan>[a-z]+)/(?P<start>[^/]+)/(?P<end>[^/]+)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
POLYGON_LIMIT_MAX = 50_000
POLYGON_LIMIT_DEFAULT = 5_000


class FakePolygon(FakeMarketServer):
    """GET /v2/aggs/ticker/{T}/range/1/{minute|day}/{from}/{to}?adjusted&sort&limit.

    Auth: `Authorization: Bearer KEY` or `?apiKey=KEY`; none or another key is a 401
    with Polygon's body. `entitled=False` answers 403 NOT_AUTHORIZED (a plan without
    this data). from/to are New York dates (whole days) or Unix milliseconds
    (inclusive). A page holds min(limit, page_size) bars; `next_url` (absolute, on this
    server) carries a cursor, and the client sends it back without other parameters.
    """

    name = "fake-polygon"

    def __init__(self, api_key: str, *, market: Market | None = None,
                 symbols: Iterable[str] = ("AAPL", "MSFT"), page_size: int = 50_000,
                 entitled: bool = True, host: str = "127.0.0.1") -> None:
        super().__init__(market=market, symbols=symbols, page_size=page_size, host=host)
        self.api_key = api_key
        self.entitled = entitled

    def answer(self, incoming: Incoming) -> Answer:
        refused = self._authorize(incoming)
        if refused is not None:
            return refused
        found = _AGGS.fullmatch(incoming.path)
        if found is None:
            return 404, {}, body({"status": "NOT_FOUND", "request_id": self.request_id(),
                                  "message": "Not found"})
        try:
            query = self._query(found, incoming.params)
            start, end = _instant(found["start"], end=False), _instant(found["end"], end=True)
        except ValueError as exc:
            return 400, {}, body({"status": "ERROR", "request_id": self.request_id(),
                                  "error": str(exc) or "Could not parse the request"})
        return 200, {}, body(self._page(found, query, start, end, incoming.host))

    def failure_body(self, status: int) -> bytes:
        error = ("You've exceeded the maximum requests per minute, please wait or upgrade "
                 "your subscription to continue. https://polygon.io/pricing"
                 if status == 429 else "Internal Server Error")
        return body({"status": "ERROR", "request_id": self.request_id(), "error": error})

    def _authorize(self, incoming: Incoming) -> Answer | None:
        bearer = incoming.headers.get("authorization", "")
        key = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else \
            incoming.params.get("apiKey")
        if not key:
            return 401, {}, body({"status": "ERROR", "request_id": self.request_id(),
                                  "error": "API Key was not provided"})
        if key != self.api_key:
            return 401, {}, body({"status": "ERROR", "request_id": self.request_id(),
                                  "error": "Unknown API Key"})
        incoming.authorized = True
        if not self.entitled:
            return 403, {}, body({
                "status": "NOT_AUTHORIZED", "request_id": self.request_id(),
                "message": "You are not entitled to this data. Please upgrade your plan at "
                           "https://polygon.io/pricing"})
        return None

    @staticmethod
    def _query(found: re.Match[str], params: Mapping[str, str]) -> dict[str, Any]:
        """offset/adjusted/sort/limit: from the cursor of a next_url, else the query."""
        if found["multiplier"] != "1" or found["timespan"] not in ("minute", "day"):
            raise ValueError("this fake serves multiplier 1 of minute or day aggregates")
        if "cursor" in params:
            return decode_cursor(params["cursor"])
        adjusted = params.get("adjusted", "true")
        sort = params.get("sort", "asc")
        limit = int(params.get("limit", POLYGON_LIMIT_DEFAULT))
        if adjusted not in ("true", "false") or sort not in ("asc", "desc") or limit < 1:
            raise ValueError("Could not parse the query parameters")
        return {"offset": 0, "adjusted": adjusted == "true", "sort": sort,
                "limit": min(limit, POLYGON_LIMIT_MAX)}

    def _page(self, found: re.Match[str], query: Mapping[str, Any], start: dt.datetime,
              end: dt.datetime, host: str) -> dict[str, Any]:
        ticker = found["ticker"]
        timespan: Timespan = "minute" if found["timespan"] == "minute" else "day"
        bars = self.market.bars(ticker, timespan, start, end, adjusted=query["adjusted"])
        if query["sort"] == "desc":
            bars.reverse()
        offset, size = int(query["offset"]), min(int(query["limit"]), self.page_size)
        page = bars[offset:offset + size]
        payload: dict[str, Any] = {
            "ticker": ticker, "queryCount": len(page), "resultsCount": len(page),
            "adjusted": query["adjusted"], "status": "OK", "request_id": self.request_id(),
            "count": len(page)}
        if page:
            payload["results"] = [_polygon_bar(bar) for bar in page]
        if offset + size < len(bars):
            cursor = encode_cursor({**query, "offset": offset + size})
            payload["next_url"] = (f"http://{host}{found.group(0)}?"
                                   f"{urlencode({'cursor': cursor})}")
        return payload


def _instant(text: str, *, end: bool) -> dt.datetime:
    """A from/to path segment: a New York date (its start, or the next day's start for
    `to`), or Unix milliseconds (inclusive: `to` + 1 ms)."""
    if _DATE.fullmatch(text):
        day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
        return new_york_midnight(day)
    millis = int(text) + (1 if end else 0)
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)


def _polygon_bar(bar: FakeBar) -> dict[str, Any]:
    millis = (bar.start - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return {"v": json_number(bar.volume), "vw": json_number(bar.vwap),
            "o": json_number(bar.open), "c": json_number(bar.close),
            "h": json_number(bar.high), "l": json_number(bar.low), "t": millis,
            "n": bar.trades}
