"""The timeline of a run, and the interface of its bars' sources (core.bars.Bar).

The timeline comes from the exchange calendar: every minute of the session (intraday)
or every session in the range (daily). Providers return exactly one bar per timeline
step; the session loop hands the decider only bars up to the current step.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from core import calendar
from core.bars import Bar
from core.errors import InvalidSpec
from core.spec import Mode, RunSpec
from core.store.base import PriceBar


@dataclass(frozen=True, slots=True)
class Timeline:
    mode: Mode
    times: list[dt.datetime]

    @property
    def interval(self) -> str:
        return "1m" if self.mode is Mode.INTRADAY else "1d"

    @property
    def periods_per_year(self) -> int:
        """For annualizing: 252 sessions a year, 390 minutes a regular session."""
        return 252 * 390 if self.mode is Mode.INTRADAY else 252

    def __len__(self) -> int:
        return len(self.times)

    @property
    def days(self) -> list[dt.date]:
        """The session dates the timeline covers (bar times are UTC, sessions New York;
        a regular session never crosses midnight UTC)."""
        return sorted({t.date() for t in self.times})


def timeline_for(spec: RunSpec) -> Timeline:
    if spec.mode is Mode.INTRADAY:
        return Timeline(spec.mode, calendar.session_minutes(spec.first_day))
    days = calendar.sessions_in_range(spec.first_day, spec.last_day)
    return Timeline(spec.mode, [dt.datetime.combine(d, dt.time(), dt.UTC) for d in days])


class MarketData(ABC):
    @abstractmethod
    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        """One bar per timeline step, in order."""


def align(symbol: str, timeline: Timeline, found: dict[dt.datetime, Bar]) -> list[Bar]:
    """Put found bars on the timeline; a minute with no trade repeats the last close
    with zero volume (as data vendors do). A missing first bar is an error."""
    out: list[Bar] = []
    for t in timeline.times:
        bar = found.get(t)
        if bar is None:
            if not out:
                raise InvalidSpec(f"no {timeline.interval} bar for {symbol} at {t.isoformat()}")
            last = out[-1].close
            bar = Bar.flat(t, last)
        out.append(bar)
    return out


def stored(rows: Iterable[PriceBar]) -> dict[dt.datetime, Bar]:
    """The bars of `stock_prices` rows (which also name their series), by time."""
    return {r.bar_time: Bar(r.bar_time, r.open, r.high, r.low, r.close, r.volume)
            for r in rows}
