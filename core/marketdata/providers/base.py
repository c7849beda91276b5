"""What a market data provider gives: every bar it has for a symbol over New York dates.

Providers return raw bars (UTC times, extended hours included, split-adjusted); turning
them into a session (the regular session's minutes, one bar per day) is the cache's job,
so every provider is held to the same session truth.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from enum import StrEnum
from zoneinfo import ZoneInfo

from core.bars import Bar

NEW_YORK = ZoneInfo("America/New_York")


class Interval(StrEnum):
    MINUTE = "1m"
    DAY = "1d"


class BarProvider(ABC):
    """One provider account. Raises ProviderRefused (do not retry: wrong key, no
    entitlement, bad request) or ProviderUnavailable (429/5xx/unreachable past the fetch
    deadline); an unknown symbol is no error, just no bars."""

    source: str  # the name bars are cached under: "polygon", "alpaca"

    @abstractmethod
    def fetch(self, symbol: str, interval: Interval, first: dt.date,
              last: dt.date) -> list[Bar]:
        """Every bar for the New York dates first..last inclusive, oldest first, all pages,
        as the provider sent them: `time` is a bar's start, timezone-aware UTC (a daily
        bar starts at midnight New York time)."""

    def fetch_minutes(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[Bar]:
        """The minute bars starting in [start, end] (aware datetimes), oldest first, as
        the provider has them now: no check that the day has closed (a live feed polls
        today's minutes; a minute still forming may be among them). Providers ask for
        just that range; this default fetches the New York dates and filters."""
        first, last = (_new_york_date(t) for t in (start, end))
        return [bar for bar in self.fetch(symbol, Interval.MINUTE, first, last)
                if start <= bar.time <= end]


def _new_york_date(when: dt.datetime) -> dt.date:
    return when.astimezone(NEW_YORK).date()
