"""What a market data provider gives: every bar it has for a symbol over New York dates.

Providers return raw bars (UTC times, extended hours included, split-adjusted); turning
them into a session (the regular session's minutes, one bar per day) is the cache's job,
so every provider is held to the same session truth.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from enum import StrEnum

from core.bars import Bar


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
