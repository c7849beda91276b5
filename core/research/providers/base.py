"""What a research provider gives: every item it has for a symbol over a window of New
York dates, as the provider dated it. Turning that into what a decision may read is the
store's and the tools' job (core.research.items: `known_at`), so every provider is held
to the same point-in-time rule.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod

from core.research.items import NEW_YORK, CorporateAction, Filing, NewsItem


class ResearchProvider(ABC):
    """One provider account. Raises core.errors.ProviderRefused (do not retry: wrong key,
    no entitlement) or ProviderUnavailable (429/5xx/unreachable past the fetch
    deadline). An unknown symbol is no error, just nothing."""

    source: str  # "polygon", "alpaca"
    serves: frozenset[str]  # of "news", "filings", "actions"

    @abstractmethod
    def news(self, symbol: str, first: dt.date, last: dt.date) -> list[NewsItem]:
        """Every item mentioning `symbol` published on New York dates first..last
        (inclusive), all pages, oldest first; undated items too (published_at None)."""

    def filings(self, symbol: str, first: dt.date, last: dt.date) -> list[Filing]:
        """Every report of `symbol` FILED on first..last (by filing date, never by
        fiscal period), quarterly and annual, all pages."""
        raise NotImplementedError(f"{self.source} serves no filings")

    def actions(self, symbol: str, first: dt.date, last: dt.date) -> list[CorporateAction]:
        """Splits and dividends of `symbol` whose ex-date falls on first..last."""
        raise NotImplementedError(f"{self.source} serves no corporate actions")


# -- helpers the providers share -------------------------------------------------------


def news_window(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """New York dates first..last as UTC instants [start, end): the first day's New York
    midnight, and the day after last's."""
    start = dt.datetime.combine(first, dt.time(0), NEW_YORK)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), NEW_YORK)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def news_in_window(items: list[NewsItem], start: dt.datetime, end: dt.datetime
                   ) -> list[NewsItem]:
    """The items published in [start, end) and the undated ones, each once (by provider
    id), oldest first, the undated last."""
    found: dict[str, NewsItem] = {}
    for item in items:
        if item.published_at is None or start <= item.published_at < end:
            found.setdefault(item.provider_id, item)
    return sorted(found.values(), key=lambda i: (i.published_at is None,
                                                 i.published_at or start, i.provider_id))


def parse_instant(value: object) -> dt.datetime | None:
    """An RFC 3339 time as UTC (one without an offset: UTC); None when absent or
    unparseable (an undated item, never answered)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
