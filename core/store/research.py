"""Research items (news, filings, corporate actions) and what was fetched of them.

Each item is stored once per (source, provider id), with the time tickrun learned of it
and the instant it became knowable (`known_at`, core.research.items), so a question
"what could be known at T" is one indexed range query. `research_days` records the
(source, kind, symbol, New York day) windows fetched, as `price_days` does for bars:
a day is fetched once, then read from the store by every run and its replays.
Public market data: no owner, no RLS policy.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum

from core.research.items import CorporateAction, Filing, NewsItem


class ResearchKind(StrEnum):
    NEWS = "news"
    FILINGS = "filings"
    ACTIONS = "actions"


class ResearchStore(ABC):
    @abstractmethod
    def save_news(self, source: str, symbol: str, days: Sequence[dt.date],
                  items: Sequence[NewsItem]) -> int:
        """Store `items` (an item already stored under its (source, provider_id) is
        left as it was: its learned_at stays the first) and mark `days` of `symbol`
        fetched, in one transaction. Returns the number of new items."""

    @abstractmethod
    def news_known(self, source: str, symbol: str, *, since: dt.datetime,
                   as_of: dt.datetime, query: str | None = None, limit: int = 10
                   ) -> tuple[list[NewsItem], int]:
        """Items of `source` tagged with `symbol` published in [since, as_of] (never an
        undated one), newest first, at most `limit`; and how many matched in all.
        `query`: words that must each appear in the title or summary (any case)."""

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
