"""A run's research desk: news, filings and corporate actions of its data source, as
known at a decision's as-of instant.

Built once per run whose decider is an LLM and whose bars come from a provider that
serves research (Massive: news, filings, actions; Alpaca: news). Each question first
makes sure the research cache holds the New York days it covers (fetched once per
source, kind, symbol and day, by this run or by `tickrun data fetch` ahead of it), then
asks the store what was known at the as-of instant: the store's queries, not this
module, draw the point-in-time line (core.store.research). A provider that refuses or
does not answer is an answer for the agent ("unavailable", with the reason), never a
failed step.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from core.errors import ProviderRefused, ProviderUnavailable, TickrunError
from core.marketdata.sessions import new_york_date
from core.marketdata.settings import MarketDataSettings
from core.research.cache import ResearchCache
from core.research.items import CorporateAction, Filing, NewsItem
from core.spec import DataSource
from core.store import Store
from core.store.research import ResearchKind

log = logging.getLogger(__name__)

# What each data source serves beyond bars; other sources (synthetic, files, table)
# have no research: a run on made-up bars has no news.
KINDS = {DataSource.POLYGON: frozenset(ResearchKind),
         DataSource.ALPACA: frozenset({ResearchKind.NEWS})}
# How far back a fundamentals answer looks: a 10-K is filed yearly, so the latest
# report is in here; the cache adds the days after the as-of instant whose items may
# already be known at it (core.research.cache.AFTER).
FILINGS_REACH = dt.timedelta(days=450)
ACTIONS_REACH = dt.timedelta(days=365)


def research_kinds(data: DataSource | None) -> frozenset[ResearchKind]:
    return KINDS.get(data, frozenset()) if data is not None else frozenset()


class ResearchUnavailable(Exception):
    """The research cache does not hold a window and cannot fetch it: the reason."""


@dataclass
class RunResearch:
    store: Store
    source: str
    kinds: frozenset[ResearchKind]
    cache: ResearchCache
    # Windows already made sure of, (kind, symbol, New York day of the as-of instant,
    # lookback): a session's 390 questions check the cache once.
    _covered: set[tuple[ResearchKind, str, dt.date, dt.timedelta]] = field(
        default_factory=set)

    def news(self, symbol: str, *, since: dt.datetime, as_of: dt.datetime,
             query: str | None, limit: int) -> tuple[list[NewsItem], int]:
        self._ensure(ResearchKind.NEWS, symbol, as_of, as_of - since)
        return self.store.news_known(self.source, symbol, since=since, as_of=as_of,
                                     query=query, limit=limit)

    def filings(self, symbol: str, *, as_of: dt.datetime, limit: int) -> list[Filing]:
        self._ensure(ResearchKind.FILINGS, symbol, as_of, FILINGS_REACH)
        return self.store.filings_known(self.source, symbol, as_of=as_of, limit=limit)

    def actions(self, symbol: str, *, as_of: dt.datetime, limit: int) -> list[CorporateAction]:
        self._ensure(ResearchKind.ACTIONS, symbol, as_of, ACTIONS_REACH)
        return self.store.actions_known(self.source, symbol, as_of=as_of, limit=limit)

    def _ensure(self, kind: ResearchKind, symbol: str, as_of: dt.datetime,
                lookback: dt.timedelta) -> None:
        # A lookback is rounded up to whole days: one window per day asked about.
        days = dt.timedelta(days=-(-lookback // dt.timedelta(days=1)))
        key = (kind, symbol, new_york_date(as_of), days)
        if key in self._covered:
            return
        try:
            self.cache.ensure_for(kind, symbol, as_of, days)
        except (ProviderRefused, ProviderUnavailable) as exc:
            raise ResearchUnavailable(f"{self.source} {kind.value}: {exc}") from exc
        except TickrunError as exc:  # not cached and no provider configured
            raise ResearchUnavailable(str(exc)) from exc
        self._covered.add(key)


def run_research(data: DataSource | None, store: Store,
                 settings: MarketDataSettings) -> RunResearch | None:
    """The research desk of a run on `data`, or None when its source serves none. With
    the provider not configured, the desk answers from the cache alone."""
    kinds = research_kinds(data)
    if data is None or not kinds:
        return None
    provider = None
    if data.value in settings.configured():
        from core.research.providers.factory import build_research_provider

        provider = build_research_provider(data.value, settings)
    return RunResearch(store=store, source=data.value, kinds=kinds,
                       cache=ResearchCache(store, data.value, provider))
