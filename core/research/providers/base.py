"""What a research provider gives: every item it has for a symbol over a window of New
York dates, as the provider dated it. Turning that into what a decision may read is the
store's and the tools' job (core.research.items: `known_at`), so every provider is held
to the same point-in-time rule.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod

from core.research.items import CorporateAction, Filing, NewsItem


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
