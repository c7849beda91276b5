"""News, filings and corporate actions from Massive (formerly Polygon.io) through its
official client, `massive`.

- news: `list_ticker_news` (GET /v2/reference/news), published_utc in
  [first day's New York midnight, the day after last's), oldest first, 1000 a page;
- filings: the financials endpoint (GET /vX/reference/financials), by FILING date,
  100 a page;
- actions: `list_splits` (GET /v3/reference/splits, by execution date) and
  `list_dividends` (GET /v3/reference/dividends, by ex-dividend date), 1000 a page.

Retries, deadlines and errors go as for bars, through core.marketdata.providers.polygon's
`session`: each call builds its own client whose urllib3 pools carry that call's
`DeadlineRetry` (the client and its `vx` sub-client have a pool each; both get it), a
refusal arrives as `BadResponse` (never retried), and the JSON decoder hands fractions
over as Decimal.

What `massive` 2.9.1 does with these answers, and how it is steered here:
- its financials model (`StockFinancial`) drops `acceptance_datetime`, `timeframe` and
  `tickers`, and keeps only the line items it has an attribute for (the API sends any
  fundamental accounting concept); so the financials listing is read raw
  (`raw=True`: the page's HTTP response, decoded here) and its `next_url` followed by
  asking the same public method for the query that URL carries (its cursor);
- its news, split and dividend models keep every field used here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from core.marketdata.providers.polygon import ExactJson, MalformedAnswer, session
from core.research.items import (
    NEW_YORK,
    ActionKind,
    CorporateAction,
    Filing,
    NewsItem,
    Statement,
)
from core.research.providers.base import (
    ResearchProvider,
    news_in_window,
    news_window,
    parse_instant,
)

# The API's maxima per page.
NEWS_LIMIT = 1000
FINANCIALS_LIMIT = 100
ACTIONS_LIMIT = 1000
_EDGAR_STAMP = re.compile(r"\d{14}")  # acceptance_datetime: YYYYMMDDHHMMSS, New York
_FORMS = {"FY": "10-K", "Q4": "10-K", "Q1": "10-Q", "Q2": "10-Q", "Q3": "10-Q"}


class PolygonResearch(ResearchProvider):
    source = "polygon"
    serves = frozenset({"news", "filings", "actions"})

    def __init__(self, api_key: SecretStr, base_url: str, deadline_seconds: float) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._deadline_seconds = deadline_seconds

    def __repr__(self) -> str:
        return f"PolygonResearch(base_url={self._base_url!r})"

    def news(self, symbol: str, first: dt.date, last: dt.date) -> list[NewsItem]:
        start, end = news_window(first, last)
        with self._session(f"{symbol} news {first}..{last}") as client:
            articles = client.list_ticker_news(
                ticker=symbol, published_utc_gte=_rfc3339(start),
                published_utc_lt=_rfc3339(end), sort="published_utc", order="asc",
                limit=NEWS_LIMIT)
            items = [_news(article) for article in articles]
        return news_in_window(items, start, end)

    def filings(self, symbol: str, first: dt.date, last: dt.date) -> list[Filing]:
        with self._session(f"{symbol} filings {first}..{last}") as client:
            reports = list(_financials(client, symbol, first, last))
        found: dict[str, Filing] = {}
        for report in reports:
            filing = filing_of(report, symbol)
            if filing is not None and first <= filing.filing_date <= last:
                found.setdefault(filing.provider_id, filing)
        return sorted(found.values(), key=lambda f: (f.known_at, f.provider_id))

    def actions(self, symbol: str, first: dt.date, last: dt.date) -> list[CorporateAction]:
        since, until = first.isoformat(), last.isoformat()
        with self._session(f"{symbol} corporate actions {first}..{last}") as client:
            splits = [_split(split, symbol) for split in client.list_splits(
                ticker=symbol, execution_date_gte=since, execution_date_lte=until,
                sort="execution_date", order="asc", limit=ACTIONS_LIMIT)]
            dividends = [_dividend(dividend, symbol) for dividend in client.list_dividends(
                ticker=symbol, ex_dividend_date_gte=since, ex_dividend_date_lte=until,
                sort="ex_dividend_date", order="asc", limit=ACTIONS_LIMIT)]
        found: dict[str, CorporateAction] = {}
        for action in splits + dividends:
            if action is not None and first <= action.ex_date <= last:
                found.setdefault(action.provider_id, action)
        return sorted(found.values(), key=lambda a: (a.ex_date, a.kind, a.provider_id))

    # -- the client ------------------------------------------------------------------

    def _session(self, what: str) -> AbstractContextManager[Any]:
        """A client for one call about `what` (core.marketdata.providers.polygon's
        `session`, with this provider's key, host and deadline)."""
        return session(self._api_key, self._base_url, self._deadline_seconds, what)


# -- parsing ---------------------------------------------------------------------------


def _rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        return None


def _number(value: object) -> Decimal | None:
    """Decimal from a JSON number (Decimal for fractions, int for integers) or a numeric
    string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


# -- news ------------------------------------------------------------------------------


def _news(article: Any) -> NewsItem:
    if not article.id:
        raise MalformedAnswer("a news article without an id")
    publisher = article.publisher.name if article.publisher is not None else None
    return NewsItem(
        source="polygon", provider_id=str(article.id),
        published_at=parse_instant(article.published_utc),
        tickers=tuple(str(t) for t in article.tickers or ()),
        title=str(article.title or ""), summary=article.description or None,
        publisher=publisher or None, url=article.article_url or None)


# -- filings ---------------------------------------------------------------------------


def _financials(client: Any, symbol: str, first: dt.date, last: dt.date
                ) -> Iterator[dict[str, Any]]:
    """Every report filed first..last, as the API's JSON, all pages."""
    answer = client.vx.list_stock_financials(
        ticker=symbol, filing_date_gte=first.isoformat(), filing_date_lte=last.isoformat(),
        limit=FINANCIALS_LIMIT, sort="filing_date", order="asc", raw=True)
    while True:
        page = ExactJson.loads(answer.data.decode("utf-8"))
        if not isinstance(page, dict):
            raise MalformedAnswer("a financials page that is not an object")
        results = page.get("results") or []
        if not isinstance(results, list):
            raise MalformedAnswer("financials results that are not a list")
        yield from (report for report in results if isinstance(report, dict))
        next_url = page.get("next_url")
        if not next_url:
            return
        # The next page's query is the cursor in next_url; the client sends it to the
        # same endpoint (what its own pagination does with next_url's path and query).
        query = dict(parse_qsl(urlsplit(str(next_url)).query, keep_blank_values=True))
        answer = client.vx.list_stock_financials(params=query, raw=True)


def filing_of(report: dict[str, Any], symbol: str) -> Filing | None:
    """The Filing of one financials report; None for one that cannot be dated (no
    filing_date) or that is no filing (a trailing-twelve-months sum)."""
    filing_date = _date(report.get("filing_date"))
    if filing_date is None:
        return None
    period = report.get("fiscal_period")
    period = period.strip().upper() if isinstance(period, str) and period.strip() else None
    if period == "TTM" or report.get("timeframe") == "ttm":
        return None
    statements = report.get("financials")
    figures: dict[str, dict[str, Decimal]] = {}
    for statement in Statement:
        items = statements.get(statement.value) if isinstance(statements, dict) else None
        if not isinstance(items, dict):
            continue
        values = {str(key): number for key, point in items.items()
                  if isinstance(point, dict)
                  and (number := _number(point.get("value"))) is not None}
        if values:
            figures[statement.value] = values
    year = _number(report.get("fiscal_year"))
    url = report.get("source_filing_url")
    url = url if isinstance(url, str) and url else None
    return Filing(
        source="polygon", provider_id=_filing_id(symbol, url, period, year, filing_date),
        symbol=symbol,
        # The endpoint names no form. Q1-Q3 come from 10-Qs; FY and Q4 (derived as the
        # year less its first three quarters) from the 10-K.
        form=_FORMS.get(period or ""),
        fiscal_year=int(year) if year is not None and year == int(year) else None,
        fiscal_period=period, period_end=_date(report.get("end_date")),
        filing_date=filing_date, accepted_at=_accepted(report.get("acceptance_datetime")),
        figures=figures, url=url)


def _filing_id(symbol: str, url: str | None, period: str | None, year: Decimal | None,
               filing_date: dt.date) -> str:
    """Stable per (symbol, report): one 10-K carries both the FY and the Q4 report, and
    one filing serves every share class of the company (GOOG, GOOGL), so neither the
    URL alone nor the filing alone names one Filing."""
    if url is not None:
        return f"{symbol}|{url}#{period or ''}"
    return f"{symbol}|{year if year is not None else ''}{period or ''}|{filing_date}"


def _accepted(value: object) -> dt.datetime | None:
    """EDGAR's acceptance time: Polygon documents YYYYMMDDHHMMSS on the Eastern wall
    clock; an RFC 3339 time is taken too (without an offset: New York). None when
    absent or unparseable (the filing is then known from its filing date's cutoff)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if _EDGAR_STAMP.fullmatch(text):
            naive = dt.datetime.strptime(text, "%Y%m%d%H%M%S")
        else:
            naive = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=NEW_YORK)
    return naive.astimezone(dt.UTC)


# -- corporate actions -----------------------------------------------------------------


def _split(split: Any, symbol: str) -> CorporateAction | None:
    ex_date = _date(split.execution_date)
    split_from, split_to = _number(split.split_from), _number(split.split_to)
    if ex_date is None or split_from is None or split_to is None:
        return None
    provider_id = str(split.id) if split.id else \
        f"{symbol}|split|{ex_date}|{split_from}|{split_to}"
    return CorporateAction(
        source="polygon", provider_id=provider_id, symbol=symbol, kind=ActionKind.SPLIT,
        ex_date=ex_date, announced_on=None,  # the splits endpoint dates no announcement
        details={"split_from": str(split_from), "split_to": str(split_to)})


def _dividend(dividend: Any, symbol: str) -> CorporateAction | None:
    ex_date = _date(dividend.ex_dividend_date)
    amount = _number(dividend.cash_amount)
    if ex_date is None or amount is None:
        return None
    details: dict[str, Any] = {"cash_amount": str(amount), "currency": dividend.currency}
    for name in ("pay_date", "record_date"):
        day = _date(getattr(dividend, name))
        details[name] = day.isoformat() if day is not None else None
    if dividend.frequency is not None:
        details["frequency"] = dividend.frequency
    if dividend.dividend_type is not None:
        details["dividend_type"] = dividend.dividend_type
    provider_id = str(dividend.id) if dividend.id else \
        f"{symbol}|dividend|{ex_date}|{amount}"
    return CorporateAction(
        source="polygon", provider_id=provider_id, symbol=symbol, kind=ActionKind.DIVIDEND,
        ex_date=ex_date, announced_on=_date(dividend.declaration_date), details=details)
