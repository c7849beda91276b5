"""The research cache: news, filings and corporate actions fetched once per (source,
kind, symbol, New York day), then read from the store, so a second run of a session
makes no provider call and its decisions read the same items.

What a caller does (the agent's tools, `tickrun data fetch`): make sure the window is
in the store (`news`, `filings`, `actions`, or `ensure_for` an as-of instant), then ask
the store what was known (`store.news_known(...)`, `filings_known`, `actions_known`).

- Days are New York calendar days (news is published on weekends too). A day is marked
  fetched (`research_days`) in the transaction that stores what the provider sent for
  it, so an interrupted fill keeps what it fetched and the next one goes on from there.
- Missing days are fetched in chunks of consecutive days, one provider call (and its
  pages) per chunk: `CHUNK_DAYS` (30 days of news, 400 of filings or actions).
- A day that is not over yet in New York (today, or a later day: a dividend declared
  now can go ex next month) is fetched but never marked: more can still come for it.
  One ResearchCache asks for such a day once; a run builds its own cache after the
  close of every session it plays, so every as-of instant it asks about lies before
  that fetch. Read-only (no provider), such a day is served as the store has it.
- `provider` None reads the store only: a day that is over and was never fetched raises
  NoResearchData naming the `tickrun data fetch` that fills it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import NoResearchData
from core.marketdata.sessions import new_york_date
from core.research.providers.base import ResearchProvider
from core.store.research import ResearchKind, ResearchStore

log = logging.getLogger(__name__)

# Days per provider call: a month of a busy ticker's news is a few hundred items (a few
# pages); a company files about four reports a year and has a handful of actions.
CHUNK_DAYS = {ResearchKind.NEWS: 30, ResearchKind.FILINGS: 400, ResearchKind.ACTIONS: 400}
# Cached days between two missing ones that a chunk may span (asked again, stored once)
# rather than making two calls.
MAX_GAP_DAYS = 5

# What decisions on the days first..last need beyond those days (`reach`): the latest
# report before them (filed up to a year earlier; companies file at least yearly), and
# the splits and dividends announced before them, whose ex-dates lie up to a year before
# and about a quarter after.
BEFORE = {ResearchKind.NEWS: dt.timedelta(0), ResearchKind.FILINGS: dt.timedelta(days=365),
          ResearchKind.ACTIONS: dt.timedelta(days=365)}
# After an as-of instant (`ensure_for`): a filing accepted after EDGAR's 17:30 cutoff
# carries the next business day's date (up to 4 days later over a long weekend), and
# an action is known from its announcement, before its ex-date.
AFTER = {ResearchKind.NEWS: dt.timedelta(0), ResearchKind.FILINGS: dt.timedelta(days=4),
         ResearchKind.ACTIONS: dt.timedelta(days=90)}


@dataclass(frozen=True, slots=True)
class ResearchProgress:
    symbol: str
    kind: ResearchKind
    days_done: int
    days_total: int
    items: int  # items the provider sent so far


Progress = Callable[[ResearchProgress], None]


def reach(kind: ResearchKind, first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """The days of `kind` to hold for decisions on first..last: the news of those days;
    the reports filed from a year before; the actions whose ex-date lies from a year
    before to 90 days after (those announced by then are known to the decisions)."""
    kind = ResearchKind(kind)
    ahead = AFTER[kind] if kind is ResearchKind.ACTIONS else dt.timedelta(0)
    return first - BEFORE[kind], last + ahead


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ResearchCache:
    """One source's research in the store; `provider` None reads the store only.
    `clock` says what "now" is (which New York days are over)."""

    def __init__(self, store: ResearchStore, source: str, provider: ResearchProvider | None,
                 *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.store = store
        self.source = source
        self.provider = provider
        self.clock = clock
        # Days not over that this cache has fetched already: (kind, symbol, day).
        self._fresh: set[tuple[ResearchKind, str, dt.date]] = set()

    def news(self, symbol: str, first: dt.date, last: dt.date, *,
             on_progress: Progress | None = None) -> int:
        """Make sure the news of `symbol` published on first..last is stored; returns
        how many days were fetched from the provider."""
        return self.fill(ResearchKind.NEWS, symbol, first, last, on_progress=on_progress)

    def filings(self, symbol: str, first: dt.date, last: dt.date, *,
                on_progress: Progress | None = None) -> int:
        """As news, for the reports filed on first..last."""
        return self.fill(ResearchKind.FILINGS, symbol, first, last, on_progress=on_progress)

    def actions(self, symbol: str, first: dt.date, last: dt.date, *,
                on_progress: Progress | None = None) -> int:
        """As news, for the splits and dividends whose ex-date is on first..last."""
        return self.fill(ResearchKind.ACTIONS, symbol, first, last, on_progress=on_progress)

    def ensure_for(self, kind: ResearchKind, symbol: str, as_of: dt.datetime,
                   lookback: dt.timedelta) -> tuple[dt.date, dt.date]:
        """Make sure what a decision at `as_of` may read of `kind` over `lookback` is
        stored (for actions and filings, the days after as_of whose items may already
        be known at it too); returns the window of New York days held."""
        kind = ResearchKind(kind)
        first = new_york_date(as_of - lookback)
        last = new_york_date(as_of + AFTER[kind]) if AFTER[kind] else new_york_date(as_of)
        self.fill(kind, symbol, first, last)
        return first, last

    def missing(self, kind: ResearchKind, symbol: str, first: dt.date,
                last: dt.date) -> list[dt.date]:
        """The days of first..last that are over and were never fetched."""
        kind = ResearchKind(kind)
        last = min(last, self._today() - dt.timedelta(days=1))
        if first > last:
            return []
        fetched = self.store.research_days(self.source, kind, symbol, first, last)
        return [d for d in _days(first, last) if d not in fetched]

    def fill(self, kind: ResearchKind, symbol: str, first: dt.date, last: dt.date, *,
             on_progress: Progress | None = None) -> int:
        """Fetch and store the days of first..last not fetched yet (and the days not
        over yet, once per cache); returns how many days were fetched. Raises
        NoResearchData without a provider (or one that does not serve `kind`),
        ProviderRefused / ProviderUnavailable from the provider."""
        kind = ResearchKind(kind)
        if first > last:
            return 0
        missing = self.missing(kind, symbol, first, last)
        today = self._today()
        if self.provider is None:
            if missing:
                raise NoResearchData(_not_fetched(kind, symbol, self.source, missing))
            return 0
        if kind.value not in self.provider.serves:
            if not missing:
                return 0
            raise NoResearchData(
                f"{self.source} serves no {kind.value} ({symbol}: {len(missing)} day(s) "
                f"from {missing[0]} were never fetched)")
        open_days = [d for d in _days(max(first, today), last)
                     if (kind, symbol, d) not in self._fresh]
        wanted = missing + open_days
        if not wanted:
            return 0
        if on_progress is not None:  # before the first request: it may wait on a limit
            on_progress(ResearchProgress(symbol, kind, 0, len(wanted), 0))
        done = items = new = 0
        for chunk in _chunks(wanted, CHUNK_DAYS[kind]):
            got = self._ask(kind, symbol, chunk[0], chunk[-1])
            new += self._save(kind, symbol, [d for d in chunk if d < today], got)
            self._fresh.update((kind, symbol, d) for d in chunk if d >= today)
            done += len(chunk)
            items += len(got)
            if on_progress is not None:
                on_progress(ResearchProgress(symbol, kind, done, len(wanted), items))
        log.info("fetched %d day(s) of %s %s from %s: %d item(s), %d new", done, symbol,
                 kind.value, self.source, items, new)
        return done

    def _today(self) -> dt.date:
        return new_york_date(self.clock())

    def _ask(self, kind: ResearchKind, symbol: str, first: dt.date,
             last: dt.date) -> Sequence[Any]:
        assert self.provider is not None
        if kind is ResearchKind.NEWS:
            return self.provider.news(symbol, first, last)
        if kind is ResearchKind.FILINGS:
            return self.provider.filings(symbol, first, last)
        return self.provider.actions(symbol, first, last)

    def _save(self, kind: ResearchKind, symbol: str, days: list[dt.date],
              got: Sequence[Any]) -> int:
        if kind is ResearchKind.NEWS:
            return self.store.save_news(self.source, symbol, days, got)
        if kind is ResearchKind.FILINGS:
            return self.store.save_filings(self.source, symbol, days, got)
        return self.store.save_actions(self.source, symbol, days, got)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _not_fetched(kind: ResearchKind, symbol: str, source: str, days: list[dt.date]) -> str:
    span = f"on {days[0]}" if len(days) == 1 else \
        f"on {len(days)} day(s) from {days[0]} to {days[-1]}"
    return (f"the {kind.value} of {symbol} from {source} {span} were never fetched and "
            f"{source} is not configured: fetch them with `tickrun data fetch {symbol} "
            f"--start {days[0]} --end {days[-1]} --{kind.value}`")


def _chunks(days: list[dt.date], size: int) -> Iterator[list[dt.date]]:
    """Runs of wanted days (sorted), at most `size` calendar days from the first to the
    last each; a gap of over MAX_GAP_DAYS (days fetched already between them) starts a
    new run."""
    chunk: list[dt.date] = []
    for day in sorted(days):
        if chunk and ((day - chunk[0]).days >= size or (day - chunk[-1]).days > MAX_GAP_DAYS):
            yield chunk
            chunk = []
        chunk.append(day)
    if chunk:
        yield chunk
