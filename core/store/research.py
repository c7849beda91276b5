"""Research items (news, filings, corporate actions) and what was fetched of them.

Each item is stored once per (source, provider id) (filings and actions: per symbol
too, since one company's report may be fetched for each of its share classes), with the
time tickrun learned of it and the instant it became knowable (`known_at`,
core.research.items), so a question "what could be known at T" is one indexed range
query. `research_days` records the (source, kind, symbol, New York day) windows
fetched, as `price_days` does for bars: a day is fetched once, then read from the store
by every run and its replays. Public market data: no owner, no RLS policy.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.research.items import NEW_YORK, CorporateAction, Filing, NewsItem
from core.store import codec
from core.store.sqlbase import Cursor, SqlAccess, equal_to, insert, utcnow

__all__ = ["ResearchKind", "ResearchSeries", "ResearchSql", "ResearchStore", "searchable"]


class ResearchKind(StrEnum):
    NEWS = "news"
    FILINGS = "filings"
    ACTIONS = "actions"


@dataclass(frozen=True, slots=True)
class ResearchSeries:
    """What the research cache holds for one source, kind and symbol."""

    source: str
    kind: ResearchKind
    symbol: str
    first_day: dt.date
    last_day: dt.date
    days: int  # days fetched (gaps are possible between first and last)
    items: int  # items dated on those days (news: published; filings: filed; actions: ex)
    fetched_at: dt.datetime


class ResearchStore(ABC):
    @abstractmethod
    def save_news(self, source: str, symbol: str, days: Sequence[dt.date],
                  items: Sequence[NewsItem]) -> int:
        """Store `items` (an item already stored under its (source, provider_id) is
        left as it was: its learned_at stays the first) and mark `days` of `symbol`
        fetched, in one transaction. Returns the number of new items. Each item is
        filed under its tickers and under `symbol` (the provider answered it for that
        symbol)."""

    @abstractmethod
    def news_known(self, source: str, symbol: str, *, since: dt.datetime,
                   as_of: dt.datetime, query: str | None = None, limit: int = 10
                   ) -> tuple[list[NewsItem], int]:
        """Items of `source` tagged with `symbol` published in [since, as_of] (never an
        undated one), newest first, at most `limit`; and how many matched in all.
        `query`: whitespace-separated words that must each appear in the title or
        summary (any case; matched literally, `%` and `_` included)."""

    @abstractmethod
    def save_filings(self, source: str, symbol: str, days: Sequence[dt.date],
                     filings: Sequence[Filing]) -> int:
        """As save_news, for filings (days: filing dates fetched)."""

    @abstractmethod
    def filings_known(self, source: str, symbol: str, *, as_of: dt.datetime,
                      limit: int = 4) -> list[Filing]:
        """The `limit` latest filings of `symbol` known at `as_of` (known_at <= as_of),
        newest known first."""

    @abstractmethod
    def save_actions(self, source: str, symbol: str, days: Sequence[dt.date],
                     actions: Sequence[CorporateAction]) -> int:
        """As save_news, for splits and dividends (days: ex-dates fetched)."""

    @abstractmethod
    def actions_known(self, source: str, symbol: str, *, as_of: dt.datetime,
                      limit: int = 10) -> list[CorporateAction]:
        """The `limit` latest actions of `symbol` known at `as_of`, newest known first."""

    @abstractmethod
    def research_days(self, source: str, kind: ResearchKind, symbol: str, first: dt.date,
                      last: dt.date) -> set[dt.date]:
        """The days first..last (inclusive) already fetched for (source, kind, symbol)."""

    @abstractmethod
    def research_summary(self, *, source: str | None = None,
                         symbol: str | None = None) -> list[ResearchSeries]:
        """What the research cache holds, one row per source, kind and symbol."""


# JSON documents (a filing's figures, an action's details) hold numbers as strings, so
# they come back exact: figures are read back as Decimal (their type says so); details
# come back as the JSON holds them (the providers give their numbers and dates as text).
def _doc(value: Any) -> Any:
    """A value as a JSON document holds it: codec.json_doc, and dates as ISO text."""
    if isinstance(value, dict):
        return {k: _doc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_doc(v) for v in value]
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return codec.json_doc(value)


def _details(value: Any) -> dict[str, Any]:
    doc = codec.js(value)
    return dict(doc) if isinstance(doc, dict) else {}


_LIKE_ESCAPE = "\\"


def searchable(title: str, summary: str | None) -> str:
    """What a news query matches against: title and summary, casefolded in Python so
    PostgreSQL and SQLite compare the same text (their own lower() differ beyond ASCII)."""
    return f"{title}\n{summary or ''}".casefold()


def _like_words(query: str | None) -> list[str]:
    """One LIKE pattern per word of `query`, with the wildcards in it escaped."""
    words = (query or "").casefold().split()
    escape = {_LIKE_ESCAPE: _LIKE_ESCAPE * 2, "%": _LIKE_ESCAPE + "%",
              "_": _LIKE_ESCAPE + "_"}
    return ["%" + "".join(escape.get(c, c) for c in w) + "%" for w in dict.fromkeys(words)]


def _aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {value!r}")


def _day_counts(dates: Iterable[dt.date | None]) -> Counter[dt.date]:
    return Counter(d for d in dates if d is not None)


class ResearchSql(SqlAccess, ResearchStore):
    def _mark_days(self, cur: Cursor, source: str, kind: ResearchKind, symbol: str,
                   days: Sequence[dt.date], counts: Mapping[dt.date, int],
                   now: dt.datetime) -> None:
        rows = [codec.columns(self.dialect, {
            "source": source, "kind": kind, "symbol": symbol, "day": day,
            "items": counts.get(day, 0), "fetched_at": now}) for day in sorted(set(days))]
        if rows:
            cur.many(codec.insert("research_days", ("source", "kind", "symbol", "day",
                                                    "items", "fetched_at"),
                                  "ON CONFLICT DO NOTHING"), rows)

    # -- news -----------------------------------------------------------------------------
    def save_news(self, source: str, symbol: str, days: Sequence[dt.date],
                  items: Sequence[NewsItem]) -> int:
        now = utcnow()
        new = 0
        # One order for every writer (by id), so two saves of overlapping items wait on
        # each other's rows instead of deadlocking.
        by_id = {item.provider_id: item for item in items}
        tagged: list[list[Any]] = []
        with self._tx(write=True) as cur:
            for provider_id in sorted(by_id):
                item = by_id[provider_id]
                values = codec.fields_of(item, source=source, learned_at=now,
                                         search_text=searchable(item.title, item.summary))
                values["tickers"] = list(item.tickers)
                new += insert(cur, self.dialect, "news_items", values,
                              "ON CONFLICT DO NOTHING")
                for ticker in sorted({*item.tickers, symbol}):
                    tagged.append(codec.columns(self.dialect, {
                        "source": source, "provider_id": provider_id, "symbol": ticker,
                        "published_at": item.published_at}))
            if tagged:
                cur.many(codec.insert("news_tickers", ("source", "provider_id", "symbol",
                                                       "published_at"),
                                      "ON CONFLICT DO NOTHING"), tagged)
            counts = _day_counts(None if i.published_at is None
                                 else i.published_at.astimezone(NEW_YORK).date()
                                 for i in by_id.values())
            self._mark_days(cur, source, ResearchKind.NEWS, symbol, days, counts, now)
        return new

    def news_known(self, source: str, symbol: str, *, since: dt.datetime,
                   as_of: dt.datetime, query: str | None = None, limit: int = 10
                   ) -> tuple[list[NewsItem], int]:
        _aware("since", since)
        _aware("as_of", as_of)
        d = self.dialect
        # published_at >= since also leaves out every undated item (NULL compares false).
        where = ("t.source = %s AND t.symbol = %s AND t.published_at >= %s"
                 " AND t.published_at <= %s")
        params: list[Any] = [source, symbol, d.time(since), d.time(as_of)]
        for pattern in _like_words(query):
            where += f" AND n.search_text LIKE %s ESCAPE '{_LIKE_ESCAPE}'"
            params.append(pattern)
        tables = ("news_tickers t JOIN news_items n"
                  " ON n.source = t.source AND n.provider_id = t.provider_id")
        with self._tx() as cur:
            total = cur.one(f"SELECT COUNT(*) AS n FROM {tables} WHERE {where}", params)
            rows = cur.all(f"SELECT n.* FROM {tables} WHERE {where}"
                           " ORDER BY t.published_at DESC, t.provider_id DESC LIMIT %s",
                           [*params, max(0, limit)])
        items = [codec.record_from(NewsItem, r, tickers=tuple(codec.js(r["tickers"]) or ()))
                 for r in rows]
        return items, int(total["n"]) if total else 0

    # -- filings --------------------------------------------------------------------------
    def save_filings(self, source: str, symbol: str, days: Sequence[dt.date],
                     filings: Sequence[Filing]) -> int:
        now = utcnow()
        new = 0
        by_id = {(f.symbol, f.provider_id): f for f in filings}
        with self._tx(write=True) as cur:
            for key in sorted(by_id):
                f = by_id[key]
                values = codec.fields_of(f, source=source, learned_at=now,
                                         known_at=f.known_at, figures=_doc(f.figures))
                new += insert(cur, self.dialect, "filings", values, "ON CONFLICT DO NOTHING")
            counts = _day_counts(f.filing_date for f in by_id.values() if f.symbol == symbol)
            self._mark_days(cur, source, ResearchKind.FILINGS, symbol, days, counts, now)
        return new

    def filings_known(self, source: str, symbol: str, *, as_of: dt.datetime,
                      limit: int = 4) -> list[Filing]:
        _aware("as_of", as_of)
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM filings WHERE source = %s AND symbol = %s AND known_at <= %s"
                " ORDER BY known_at DESC, filing_date DESC, provider_id DESC LIMIT %s",
                (source, symbol, self.dialect.time(as_of), max(0, limit)))
        return [codec.record_from(Filing, r) for r in rows]

    # -- corporate actions ----------------------------------------------------------------
    def save_actions(self, source: str, symbol: str, days: Sequence[dt.date],
                     actions: Sequence[CorporateAction]) -> int:
        now = utcnow()
        new = 0
        by_id = {(a.symbol, a.provider_id): a for a in actions}
        with self._tx(write=True) as cur:
            for key in sorted(by_id):
                a = by_id[key]
                values = codec.fields_of(a, source=source, learned_at=now,
                                         known_at=a.known_at, details=_doc(a.details))
                new += insert(cur, self.dialect, "corporate_actions", values,
                              "ON CONFLICT DO NOTHING")
            counts = _day_counts(a.ex_date for a in by_id.values() if a.symbol == symbol)
            self._mark_days(cur, source, ResearchKind.ACTIONS, symbol, days, counts, now)
        return new

    def actions_known(self, source: str, symbol: str, *, as_of: dt.datetime,
                      limit: int = 10) -> list[CorporateAction]:
        _aware("as_of", as_of)
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM corporate_actions WHERE source = %s AND symbol = %s"
                " AND known_at <= %s ORDER BY known_at DESC, ex_date DESC, provider_id DESC"
                " LIMIT %s",
                (source, symbol, self.dialect.time(as_of), max(0, limit)))
        return [codec.record_from(CorporateAction, r, details=_details(r["details"]))
                for r in rows]

    # -- what was fetched -----------------------------------------------------------------
    def research_days(self, source: str, kind: ResearchKind, symbol: str, first: dt.date,
                      last: dt.date) -> set[dt.date]:
        return self._days_between(
            "research_days",
            {"source": source, "kind": ResearchKind(kind).value, "symbol": symbol},
            first, last)

    def research_summary(self, *, source: str | None = None,
                         symbol: str | None = None) -> list[ResearchSeries]:
        where, params = equal_to({"source": source, "symbol": symbol})
        with self._tx() as cur:
            rows = cur.all(
                "SELECT source, kind, symbol, MIN(day) AS first_day, MAX(day) AS last_day,"
                " COUNT(*) AS days, SUM(items) AS items, MAX(fetched_at) AS fetched_at"
                f" FROM research_days WHERE {where}"
                " GROUP BY source, kind, symbol ORDER BY symbol, kind, source",
                params)
        return [codec.record_from(ResearchSeries, r, days=int(r["days"]),
                                  items=int(r["items"] or 0)) for r in rows]

