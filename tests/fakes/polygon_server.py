"""A local Massive (formerly Polygon.io) aggregates server, and the market both fakes serve.

The tests drive the official `massive` client against it, so what is tested is what runs
in production: paths, query parameters, bearer auth, `next_url` pagination, the error
bodies the client turns into exceptions, urllib3's retries.

`Market` is the truth both this fake and the Alpaca fake (alpaca_server.py) serve: every
bar is a pure function of (symbol, bar start), so a test computes the exact values it
expects. Minute bars cover 04:00 New York to four hours after the close (20:00, or 17:00
on a half day) on XNYS sessions (core.calendar); daily bars are stamped midnight New
York. Knobs: gaps, days without data, splits (raw prices before the split date are
ratio x adjusted), a day in progress (`trading_until`: no bar starts after a clock's
now). `FakeMarketServer` is the HTTP side both fakes share: scripted
failures, every request recorded (thread-safe), start/close or a `with` block.

`Market.research` (`Research`) is the research truth: news articles (both fakes serve
them, each in its provider's shape), financial reports, splits and dividends (Polygon's
reference endpoints). FakePolygon serves GET /v2/reference/news, /vX/reference/financials,
/v3/reference/splits and /v3/reference/dividends: the paths the `massive` client calls.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        self.research = Research()
        # A day in progress: the market's now (None: every day is over). A bar that
        # starts after it does not exist yet; the minute forming at it is served, as
        # the providers serve it.
        self.now: Callable[[], dt.datetime] | None = None

    # -- knobs -------------------------------------------------------------------------
    def trading_until(self, now: Callable[[], dt.datetime] | None) -> None:
        """Serve only the bars that started by `now()` (a test's clock), the forming
        minute included; None: every bar."""
        self.now = now

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
        cut = self.now() if self.now is not None else None
        return [bar for bar in found
                if start <= bar.start < end and (cut is None or bar.start <= cut)]

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


# -- research: news, financial reports, corporate actions ------------------------------

# A news article's publication time as a test gives it: an aware datetime (rendered as
# each provider writes it), a string (sent verbatim, parseable or not), or None (absent).
Published = dt.datetime | str | None


@dataclass(frozen=True)
class FakeNews:
    id: str
    published: Published
    # The instant the provider files the article under (its range filters and sort use
    # it): the parsed `published`, unless a test says otherwise (an article whose date
    # field is missing or garbled while the provider still indexes it).
    indexed_at: dt.datetime | None
    tickers: tuple[str, ...]
    title: str
    description: str | None
    publisher: str | None
    url: str | None
    author: str | None
    keywords: tuple[str, ...]
    content: str


@dataclass(frozen=True)
class FakeFinancials:
    """One report of Polygon's financials endpoint: figures {statement: {item: value}}."""

    tickers: tuple[str, ...]
    company_name: str
    cik: str
    fiscal_year: int
    fiscal_period: str  # Q1..Q4, FY, TTM
    timeframe: str  # quarterly, annual, ttm
    start_date: dt.date | None
    end_date: dt.date
    filing_date: dt.date | None
    acceptance_datetime: dt.datetime | str | None  # datetime: rendered as EDGAR's
    source_filing_url: str | None
    figures: Mapping[str, Mapping[str, Decimal]]


@dataclass(frozen=True)
class FakeSplit:
    id: str
    ticker: str
    execution_date: dt.date
    split_from: Decimal
    split_to: Decimal


@dataclass(frozen=True)
class FakeDividend:
    id: str
    ticker: str
    ex_dividend_date: dt.date
    cash_amount: Decimal
    currency: str
    declaration_date: dt.date | None
    record_date: dt.date | None
    pay_date: dt.date | None
    frequency: int
    dividend_type: str


class Research:
    """What the research endpoints serve. Configure it before requests arrive."""

    def __init__(self) -> None:
        self.news: list[FakeNews] = []
        self.financials: list[FakeFinancials] = []
        self.splits: list[FakeSplit] = []
        self.dividends: list[FakeDividend] = []

    def add_news(self, id: str, published_utc: Published, tickers: Iterable[str], title: str,
                 description: str | None = None, publisher: str | None = "Benzinga",
                 url: str | None = None, *, author: str | None = None,
                 keywords: Iterable[str] = (), content: str = "",
                 indexed_at: dt.datetime | None = None) -> FakeNews:
        """An article. `published_utc`: see `Published`; `indexed_at` (default: the
        parsed `published_utc`) is what the providers' filters and sorting compare, so
        an article without one is found by no time window."""
        if isinstance(published_utc, dt.datetime) and published_utc.tzinfo is None:
            raise ValueError("published_utc must be timezone-aware")
        item = FakeNews(
            id=id, published=published_utc,
            indexed_at=(indexed_at or _parsed_instant(published_utc)),
            tickers=tuple(tickers), title=title, description=description,
            publisher=publisher, url=url if url is not None else f"https://news.example/{id}",
            author=author, keywords=tuple(keywords), content=content)
        self.news.append(item)
        return item

    def add_financials(self, ticker: str, fiscal_year: int, fiscal_period: str,
                       end_date: dt.date, filing_date: dt.date | None,
                       acceptance_datetime: dt.datetime | str | None = None,
                       figures: Mapping[str, Mapping[str, Decimal | int | str]] | None = None,
                       *, start_date: dt.date | None = None,
                       source_filing_url: str | None = "",
                       timeframe: str | None = None,
                       tickers: Iterable[str] | None = None) -> FakeFinancials:
        """A report. `figures`: {"income_statement": {"revenues": 1000, ...}, ...};
        `source_filing_url`: "" derives one of this report's own (give reports of one
        filing, a 10-K's FY and Q4, the same URL), None leaves it out; `timeframe`
        follows the period (FY: annual, TTM: ttm, else quarterly)."""
        if timeframe is None:
            timeframe = {"FY": "annual", "TTM": "ttm"}.get(fiscal_period, "quarterly")
        if source_filing_url == "":
            report_key = f"{ticker}|{fiscal_year}|{fiscal_period}|{filing_date}"
            accession = f"{_digest(report_key) % 10**10:010d}"
            source_filing_url = ("https://api.polygon.io/v1/reference/sec/filings/"
                                 f"{accession}-{fiscal_year % 100:02d}-000001")
        report = FakeFinancials(
            tickers=tuple(tickers) if tickers is not None else (ticker,),
            company_name=f"{ticker} Inc.", cik=f"{_digest(f'cik|{ticker}') % 10**10:010d}",
            fiscal_year=fiscal_year, fiscal_period=fiscal_period, timeframe=timeframe,
            start_date=start_date, end_date=end_date, filing_date=filing_date,
            acceptance_datetime=acceptance_datetime, source_filing_url=source_filing_url,
            figures={statement: {key: Decimal(value) for key, value in items.items()}
                     for statement, items in (figures or {}).items()})
        self.financials.append(report)
        return report

    def add_split(self, ticker: str, execution_date: dt.date,
                  split_from: Decimal | int | str, split_to: Decimal | int | str, *,
                  id: str | None = None) -> FakeSplit:
        """A split (split_from shares become split_to); bars are not affected (that is
        `Market.split`)."""
        split = FakeSplit(id or _polygon_id(f"split|{ticker}|{execution_date}"), ticker,
                          execution_date, Decimal(split_from), Decimal(split_to))
        self.splits.append(split)
        return split

    def add_dividend(self, ticker: str, ex_dividend_date: dt.date,
                     cash_amount: Decimal | int | str, *, currency: str = "USD",
                     declaration_date: dt.date | None = None,
                     record_date: dt.date | None = None, pay_date: dt.date | None = None,
                     frequency: int = 4, dividend_type: str = "CD",
                     id: str | None = None) -> FakeDividend:
        dividend = FakeDividend(
            id or _polygon_id(f"dividend|{ticker}|{ex_dividend_date}"), ticker,
            ex_dividend_date, Decimal(cash_amount), currency, declaration_date, record_date,
            pay_date, frequency, dividend_type)
        self.dividends.append(dividend)
        return dividend


def _parsed_instant(value: Published) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _polygon_id(text: str) -> str:
    """An id shaped like Polygon's reference ids ("E" and 64 hex digits)."""
    return "E" + hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def rfc3339(instant: dt.datetime) -> str:
    """UTC with a Z, to the second, as both providers write their times."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """GET /v2/aggs/ticker/{T}/range/1/{minute|day}/{from}/{to}?adjusted&sort&limit, and
    the research listings of the market's `Research`: /v2/reference/news,
    /vX/reference/financials, /v3/reference/splits, /v3/reference/dividends.

    Auth: `Authorization: Bearer KEY` or `?apiKey=KEY`; none or another key is a 401
    with Polygon's body. `entitled=False` answers 403 NOT_AUTHORIZED (a plan without
    this data). from/to are New York dates (whole days) or Unix milliseconds
    (inclusive). A page holds min(limit, page_size) bars; `next_url` (absolute, on this
    server) carries a cursor, and the client sends it back without other parameters.

    The listings take `ticker`, their field filters (`published_utc` on news, an
    RFC 3339 instant or a date; `filing_date`, `period_of_report_date` and `timeframe` on
    financials; `execution_date` on splits; `ex_dividend_date`, `declaration_date`,
    `record_date`, `pay_date` on dividends; each also as `.gt/.gte/.lt/.lte`), `sort`
    (one of those fields), `order` (asc/desc) and `limit` (default 10; at most 1000, or
    100 for financials: more is a 400). An item without the filtered field matches no
    filter on it. Pages are min(limit, page_size) items; `next_url` as above. Unknown
    parameters are ignored.
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
        listing = _LISTINGS.get(incoming.path)
        if listing is not None:
            return self._listing(listing, incoming)
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

    def _listing(self, listing: _Listing, incoming: Incoming) -> Answer:
        params = incoming.params
        try:
            if "cursor" in params:
                state = decode_cursor(params["cursor"])
                query, offset = dict(state["query"]), int(state["offset"])
            else:
                query = {k: v for k, v in params.items() if k != "apiKey"}
                offset = 0
            rows, limit = listing.select(self.market.research, query)
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {}, body({"status": "ERROR", "request_id": self.request_id(),
                                  "error": str(exc) or "Could not parse the request"})
        size = min(limit, self.page_size)
        page = rows[offset:offset + size]
        payload: dict[str, Any] = {"results": [listing.render(row) for row in page],
                                   "status": "OK", "request_id": self.request_id(),
                                   "count": len(page)}
        if offset + size < len(rows):
            cursor = encode_cursor({"query": query, "offset": offset + size})
            payload["next_url"] = (f"http://{incoming.host}{listing.path}?"
                                   f"{urlencode({'cursor': cursor})}")
        return 200, {}, body(payload)

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


# -- Massive / Polygon: the research listings -----------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "": lambda value, bound: bool(value == bound),
    "gt": lambda value, bound: bool(value > bound),
    "gte": lambda value, bound: bool(value >= bound),
    "lt": lambda value, bound: bool(value < bound),
    "lte": lambda value, bound: bool(value <= bound),
}


def _query_date(text: str) -> dt.date:
    if not _DATE.fullmatch(text):
        raise ValueError(f"Could not parse the date {text!r}: use YYYY-MM-DD")
    return dt.date.fromisoformat(text)


def _query_instant(text: str) -> dt.datetime:
    """published_utc's filter values: an RFC 3339 instant, or a date (midnight UTC)."""
    if _DATE.fullmatch(text):
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(0), dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"Could not parse the time {text!r}: use RFC 3339") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class _Field:
    value: Callable[[Any], Any]  # of a row; None: the row has none
    parse: Callable[[str], Any]  # a query value


@dataclass(frozen=True)
class _Listing:
    path: str
    rows: Callable[[Research], Sequence[Any]]
    fields: Mapping[str, _Field]  # filterable and sortable
    has_ticker: Callable[[Any, str], bool]
    default_sort: str
    limit_max: int
    render: Callable[[Any], dict[str, Any]]

    def select(self, research: Research, query: Mapping[str, str]) -> tuple[list[Any], int]:
        """The rows the query selects, sorted, and its page limit."""
        limit = int(query.get("limit", 10))
        if not 1 <= limit <= self.limit_max:
            raise ValueError(f"limit must be between 1 and {self.limit_max}")
        sort = query.get("sort", self.default_sort)
        order = query.get("order", "desc")
        if sort not in self.fields or order not in ("asc", "desc"):
            raise ValueError(f"Could not sort by {sort!r} {order!r}")
        rows = list(self.rows(research))
        for key, text in query.items():
            if key == "ticker":
                rows = [row for row in rows if self.has_ticker(row, text)]
                continue
            name, _, operator = key.partition(".")
            spec = self.fields.get(name)
            if spec is None or operator not in _OPERATORS:
                continue  # not a filter of this listing: ignored, as Polygon does
            bound, compare = spec.parse(text), _OPERATORS[operator]
            rows = [row for row in rows
                    if (value := spec.value(row)) is not None and compare(value, bound)]
        key_of = self.fields[sort].value
        dated = sorted((row for row in rows if key_of(row) is not None), key=key_of,
                       reverse=order == "desc")
        return dated + [row for row in rows if key_of(row) is None], limit


def _news_json(item: FakeNews) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "id": item.id, "title": item.title, "author": item.author or "Staff",
        "article_url": item.url, "tickers": list(item.tickers),
        "keywords": list(item.keywords)}
    if item.publisher is not None:
        slug = re.sub(r"[^a-z0-9]+", "", item.publisher.lower()) or "publisher"
        rendered["publisher"] = {
            "name": item.publisher, "homepage_url": f"https://www.{slug}.com/",
            "logo_url": f"https://s3.polygon.io/public/assets/news/logos/{slug}.svg",
            "favicon_url": f"https://s3.polygon.io/public/assets/news/favicons/{slug}.ico"}
    if isinstance(item.published, dt.datetime):
        rendered["published_utc"] = rfc3339(item.published)
    elif item.published is not None:
        rendered["published_utc"] = item.published
    if item.description is not None:
        rendered["description"] = item.description
    return rendered


def _unit(key: str) -> str:
    if key.endswith("earnings_per_share"):
        return "USD / shares"
    return "shares" if key.endswith("average_shares") else "USD"


def _financials_json(report: FakeFinancials) -> dict[str, Any]:
    accepted = report.acceptance_datetime
    rendered: dict[str, Any] = {
        "start_date": report.start_date.isoformat() if report.start_date else None,
        "end_date": report.end_date.isoformat(), "timeframe": report.timeframe,
        "fiscal_period": report.fiscal_period, "fiscal_year": str(report.fiscal_year),
        "cik": report.cik, "sic": "3571", "tickers": list(report.tickers),
        "company_name": report.company_name,
        "financials": {
            statement: {key: {"label": key.replace("_", " ").title(),
                              "value": json_number(value), "unit": _unit(key),
                              "order": 100 * (position + 1)}
                        for position, (key, value) in enumerate(items.items())}
            for statement, items in report.figures.items()}}
    if report.filing_date is not None:
        rendered["filing_date"] = report.filing_date.isoformat()
    if isinstance(accepted, dt.datetime):
        # EDGAR's acceptance time, New York wall clock, as Polygon documents it
        rendered["acceptance_datetime"] = accepted.astimezone(NEW_YORK).strftime("%Y%m%d%H%M%S")
    elif accepted is not None:
        rendered["acceptance_datetime"] = accepted
    if report.source_filing_url is not None:
        rendered["source_filing_url"] = report.source_filing_url
        rendered["source_filing_file_url"] = f"{report.source_filing_url}/xbrl.xml"
    return {k: v for k, v in rendered.items() if v is not None}


def _split_json(split: FakeSplit) -> dict[str, Any]:
    return {"execution_date": split.execution_date.isoformat(), "id": split.id,
            "split_from": json_number(split.split_from),
            "split_to": json_number(split.split_to), "ticker": split.ticker}


def _dividend_json(dividend: FakeDividend) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "cash_amount": json_number(dividend.cash_amount), "currency": dividend.currency,
        "dividend_type": dividend.dividend_type,
        "ex_dividend_date": dividend.ex_dividend_date.isoformat(),
        "frequency": dividend.frequency, "id": dividend.id, "ticker": dividend.ticker}
    for name in ("declaration_date", "record_date", "pay_date"):
        day = getattr(dividend, name)
        if day is not None:
            rendered[name] = day.isoformat()
    return rendered


def _date_field(name: str) -> _Field:
    return _Field(lambda row: getattr(row, name), _query_date)


_LISTINGS: dict[str, _Listing] = {listing.path: listing for listing in (
    _Listing("/v2/reference/news", lambda research: research.news,
             {"published_utc": _Field(lambda row: row.indexed_at, _query_instant)},
             lambda row, ticker: ticker in row.tickers, "published_utc", 1000, _news_json),
    _Listing("/vX/reference/financials", lambda research: research.financials,
             {"filing_date": _date_field("filing_date"),
              "period_of_report_date": _date_field("end_date"),
              "timeframe": _Field(lambda row: row.timeframe, str)},
             lambda row, ticker: ticker in row.tickers, "period_of_report_date", 100,
             _financials_json),
    _Listing("/v3/reference/splits", lambda research: research.splits,
             {"execution_date": _date_field("execution_date")},
             lambda row, ticker: row.ticker == ticker, "execution_date", 1000, _split_json),
    _Listing("/v3/reference/dividends", lambda research: research.dividends,
             {name: _date_field(name) for name in ("ex_dividend_date", "declaration_date",
                                                   "record_date", "pay_date")},
             lambda row, ticker: row.ticker == ticker, "ex_dividend_date", 1000,
             _dividend_json),
)}
