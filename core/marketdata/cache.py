"""The bar cache: bars fetched once per (source, symbol, interval, day), then read from
the store, so a second run of a session makes no provider call and sees the same bars.

Missing days are fetched in chunks of consecutive sessions (one provider request and
its pages per chunk) and stored a chunk per transaction, so a long backtest that is
interrupted keeps what it fetched and the next attempt goes on from there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from core.errors import NoMarketData
from core.marketdata.providers.base import BarProvider, Interval
from core.marketdata.sessions import require_closed, session_bars
from core.store import Store
from core.store.base import PriceBar

log = logging.getLogger(__name__)

# Sessions per provider request: 20 days of minutes with extended hours is ~19,200 bars,
# under Polygon's 50,000 per request; daily bars are small.
CHUNK_DAYS = {Interval.MINUTE: 20, Interval.DAY: 2_000}

Progress = Callable[["FillProgress"], None]


@dataclass(frozen=True, slots=True)
class FillProgress:
    symbol: str
    interval: Interval
    days_done: int
    days_total: int
    bars: int


class BarCache:
    """One source's bars in the store; `provider` None reads the cache only."""

    def __init__(self, store: Store, source: str, provider: BarProvider | None) -> None:
        self.store = store
        self.source = source
        self.provider = provider

    def missing(self, symbol: str, interval: Interval, days: Sequence[dt.date]) -> list[dt.date]:
        if not days:
            return []
        cached = self.store.cached_days(self.source, symbol, interval.value, min(days),
                                        max(days))
        return sorted(set(days) - cached)

    def fill(self, symbol: str, interval: Interval, days: Sequence[dt.date], *,
             on_progress: Progress | None = None) -> int:
        """Fetch and store the days not cached yet; returns how many were fetched.
        Raises NoMarketData for a day the provider has no bars for (after keeping the
        days it had), ProviderRefused / ProviderUnavailable from the provider."""
        missing = self.missing(symbol, interval, days)
        if not missing:
            return 0
        require_closed(missing[-1:])
        if self.provider is None:
            raise NoMarketData(
                f"{len(missing)} {interval.value} day(s) of {symbol} from {self.source} are "
                f"not cached (first {missing[0]}) and {self.source} is not configured")
        done = bars = 0
        empty: list[dt.date] = []
        if on_progress is not None:  # before the first request: it may wait on a limit
            on_progress(FillProgress(symbol, interval, 0, len(missing), 0))
        for chunk in _chunks(missing, CHUNK_DAYS[interval]):
            by_day = session_bars(symbol, interval,
                                  self.provider.fetch(symbol, interval, chunk[0], chunk[-1]),
                                  chunk)
            found = {day: day_bars for day, day_bars in by_day.items() if day_bars}
            self.store.cache_days(self.source, symbol, interval.value, found)
            done += len(chunk)
            bars += sum(len(b) for b in found.values())
            if on_progress is not None:
                on_progress(FillProgress(symbol, interval, done, len(missing), bars))
            empty += sorted(set(chunk) - set(found))
        if empty:  # after the other chunks, so what the provider has is cached
            raise NoMarketData(_no_bars(symbol, empty, self.source))
        log.info("cached %d %s day(s) of %s from %s (%d bars)", done, interval.value, symbol,
                 self.source, bars)
        return done

    def load(self, symbol: str, interval: Interval,
             days: Sequence[dt.date]) -> Iterator[PriceBar]:
        """The cached session bars of `days`, oldest first."""
        if not days:
            return
        start = dt.datetime.combine(min(days), dt.time(), dt.UTC)
        end = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(), dt.UTC)
        for bar in self.store.load_prices(symbol, interval.value, start, end,
                                          source=self.source):
            if bar.bar_time < end:
                yield bar


def _no_bars(symbol: str, days: list[dt.date], source: str) -> str:
    when = f"on {days[0]}" if len(days) == 1 else f"on {len(days)} days from {days[0]}"
    return (f"no bars for {symbol} {when} from {source} (an unknown or delisted symbol, "
            "or a day the provider does not cover)")


def _chunks(days: list[dt.date], size: int) -> Iterator[list[dt.date]]:
    """Runs of missing days, at most `size` each; a gap of over 5 calendar days (days
    already cached between them) starts a new run rather than fetching them again."""
    chunk: list[dt.date] = []
    for day in days:
        if chunk and (len(chunk) >= size or (day - chunk[-1]).days > 5):
            yield chunk
            chunk = []
        chunk.append(day)
    if chunk:
        yield chunk
