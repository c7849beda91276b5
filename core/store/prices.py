"""Market data: the `stock_prices` table an operator loads, and the bar cache.

Bars fetched from a provider are cached by session day: a day's row in `price_days`
is written first in the same transaction as its bars, so two runners fetching the same
day store its bars once.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.store import codec
from core.store.sqlbase import SqlAccess, equal_to, insert, utcnow


@dataclass(frozen=True, slots=True)
class PriceBar:
    symbol: str
    interval: str
    bar_time: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    source: str = "table"  # "table" (loaded by an operator), "polygon", "alpaca"


@dataclass(frozen=True, slots=True)
class CachedSeries:
    """What the bar cache holds for one source, symbol and interval."""

    source: str
    symbol: str
    interval: str
    first_day: dt.date
    last_day: dt.date
    days: int
    bars: int
    fetched_at: dt.datetime


class PriceStore(ABC):
    @abstractmethod
    def save_prices(self, bars: Sequence[PriceBar]) -> int: ...

    @abstractmethod
    def load_prices(self, symbol: str, interval: str, start: dt.datetime,
                    end: dt.datetime, *, source: str = "table") -> Iterator[PriceBar]: ...

    @abstractmethod
    def cache_days(self, source: str, symbol: str, interval: str,
                   days: Mapping[dt.date, Sequence[PriceBar]]) -> int:
        """Store fetched session days and mark them cached, in one transaction; a day
        already cached (another runner fetched it first) is left as it is. Returns the
        number of days this call cached."""

    @abstractmethod
    def cached_days(self, source: str, symbol: str, interval: str, first: dt.date,
                    last: dt.date) -> set[dt.date]:
        """The days from first to last (inclusive) whose bars are cached."""

    @abstractmethod
    def cache_summary(self, *, source: str | None = None,
                      symbol: str | None = None) -> list[CachedSeries]:
        """What the cache holds, one row per source, symbol and interval."""


_INSERT_BAR = codec.insert("stock_prices", codec.names(PriceBar))


class PricesSql(SqlAccess, PriceStore):
    def _bar_rows(self, bars: Sequence[PriceBar], source: str | None = None
                  ) -> list[list[Any]]:
        return [codec.columns(self.dialect, codec.fields_of(b, source=source or b.source))
                for b in bars]

    def save_prices(self, bars: Sequence[PriceBar]) -> int:
        with self._tx(write=True) as cur:
            cur.many(_INSERT_BAR + " ON CONFLICT (source, symbol, interval, bar_time)"
                     " DO UPDATE SET open = excluded.open, high = excluded.high,"
                     " low = excluded.low, close = excluded.close, volume = excluded.volume",
                     self._bar_rows(bars))
        return len(bars)

    def load_prices(self, symbol: str, interval: str, start: dt.datetime,
                    end: dt.datetime, *, source: str = "table") -> Iterator[PriceBar]:
        d = self.dialect
        with self._tx() as cur:
            rows = cur.all(
                "SELECT * FROM stock_prices WHERE source = %s AND symbol = %s"
                " AND interval = %s AND bar_time >= %s AND bar_time <= %s ORDER BY bar_time",
                (source, symbol, interval, d.time(start), d.time(end)),
            )
        for r in rows:
            yield codec.record_from(PriceBar, r)

    def cache_days(self, source: str, symbol: str, interval: str,
                   days: Mapping[dt.date, Sequence[PriceBar]]) -> int:
        cached = 0
        with self._tx(write=True) as cur:
            for day, bars in sorted(days.items()):
                # The day row first: a concurrent fetch of the same day waits on its key
                # and then finds it taken, so no bar is written twice.
                values = {"source": source, "symbol": symbol, "interval": interval,
                          "day": day, "bars": len(bars), "fetched_at": utcnow()}
                if not insert(cur, self.dialect, "price_days", values, "ON CONFLICT DO NOTHING"):
                    continue
                cur.many(_INSERT_BAR + " ON CONFLICT DO NOTHING", self._bar_rows(bars, source))
                cached += 1
        return cached

    def cached_days(self, source: str, symbol: str, interval: str, first: dt.date,
                    last: dt.date) -> set[dt.date]:
        return self._days_between(
            "price_days", {"source": source, "symbol": symbol, "interval": interval},
            first, last)

    def cache_summary(self, *, source: str | None = None,
                      symbol: str | None = None) -> list[CachedSeries]:
        where, params = equal_to({"source": source, "symbol": symbol})
        with self._tx() as cur:
            rows = cur.all(
                "SELECT source, symbol, interval, MIN(day) AS first_day, MAX(day) AS last_day,"
                " COUNT(*) AS days, SUM(bars) AS bars, MAX(fetched_at) AS fetched_at"
                f" FROM price_days WHERE {where}"
                " GROUP BY source, symbol, interval ORDER BY symbol, interval, source",
                params,
            )
        return [codec.record_from(CachedSeries, r) for r in rows]
