"""Session truth: a provider's raw bars turned into the bars of XNYS sessions.

Minute bars are kept only inside the regular session (pre- and post-market dropped;
390 minutes, 210 on half days); a daily bar is stamped with its New York date at
midnight UTC, as the run's timeline is. The calendar decides, never the provider.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from core import calendar
from core.bars import Bar
from core.errors import InvalidSpec
from core.marketdata.providers.base import Interval
from core.store.base import PriceBar

NEW_YORK = ZoneInfo(calendar.NEW_YORK)


def require_closed(days: Sequence[dt.date], now: dt.datetime | None = None) -> None:
    """A session still trading has no final bars yet: cached now, it would stay partial
    for good. Raises InvalidSpec naming when its bars are complete."""
    now = now or dt.datetime.now(dt.UTC)
    for day in days:
        if day >= now.date() - dt.timedelta(days=1) and calendar.session_close(day) > now:
            closes = calendar.session_close(day).strftime("%H:%M UTC")
            raise InvalidSpec(f"the {day} session has not closed yet (it closes at {closes}): "
                              "its bars are final after that")


def new_york_date(when: dt.datetime) -> dt.date:
    return when.astimezone(NEW_YORK).date()


def session_bars(symbol: str, interval: Interval, raw: Iterable[Bar],
                 days: Sequence[dt.date]) -> dict[dt.date, list[PriceBar]]:
    """The session bars of each of `days` (every day present, maybe with no bars)."""
    by_day: dict[dt.date, list[PriceBar]] = {day: [] for day in days}
    minutes = _session_minutes(days) if interval is Interval.MINUTE else {}
    for bar in raw:
        time = bar.time.astimezone(dt.UTC)
        day = new_york_date(time)
        if day not in by_day:
            continue
        if interval is Interval.MINUTE:
            if time not in minutes.get(day, ()):
                continue  # pre- or post-market
        else:
            time = dt.datetime.combine(day, dt.time(), dt.UTC)
        by_day[day].append(PriceBar(symbol=symbol, interval=interval.value, bar_time=time,
                                    open=bar.open, high=bar.high, low=bar.low,
                                    close=bar.close, volume=bar.volume))
    return by_day


def _session_minutes(days: Sequence[dt.date]) -> dict[dt.date, set[dt.datetime]]:
    return {day: set(calendar.session_minutes(day)) for day in days}
