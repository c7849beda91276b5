"""Trading sessions from a maintained exchange calendar (XNYS), never hand-written tables.

Holidays, half days and the 390/210-minute sessions all come from exchange_calendars;
this module only narrows its API to what tickrun asks: which dates are sessions and
which minutes a session has.

exchange_calendars and pandas are imported on first use, not with the module: about
50 MB that a process which never asks (the controller without schedules) does not pay.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import InvalidSpec

EXCHANGE = "XNYS"
NEW_YORK = "America/New_York"
CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=1)
def exchange_calendar() -> Any:
    import exchange_calendars as xcals

    # The default calendar spans only ~20 years back; backtests go further.
    return xcals.get_calendar(EXCHANGE, start=CALENDAR_START)


def _ts(day: dt.date) -> Any:
    import pandas as pd

    return pd.Timestamp(day)


def _bounds_check(day: dt.date) -> None:
    cal = exchange_calendar()
    first, last = cal.first_session.date(), cal.last_session.date()
    if not first <= day <= last:
        raise InvalidSpec(f"{day} is outside the exchange calendar ({first} to {last})")


# The calendar is fixed for a process's life and pandas answers in tens to hundreds of
# microseconds: the answers asked again and again (every POST checks its dates and counts
# its steps, a tenth of its time) are kept; a few dozen sessions' minutes or ranges'
# days are a few MB at most.
@lru_cache(maxsize=4096)
def is_session(day: dt.date) -> bool:
    _bounds_check(day)
    return bool(exchange_calendar().is_session(_ts(day)))


def sessions_in_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every trading session from start to end inclusive; a range with none is an error."""
    days = list(_sessions_in_range(start, end))
    if not days:
        raise InvalidSpec(f"no trading session between {start} and {end}")
    return days


@lru_cache(maxsize=64)
def _sessions_in_range(start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
    _bounds_check(start)
    _bounds_check(end)
    return tuple(ts.date() for ts in exchange_calendar().sessions_in_range(_ts(start), _ts(end)))


def session_minutes(day: dt.date) -> list[dt.datetime]:
    """The open time of every one-minute bar of the regular session, in UTC.

    390 on a normal day, 210 on a half day; a date that is no session is an error.
    """
    if not is_session(day):
        raise InvalidSpec(f"{day} is not a trading session ({EXCHANGE})")
    return list(_session_minutes(day))


@lru_cache(maxsize=64)
def _session_minutes(day: dt.date) -> tuple[dt.datetime, ...]:
    cal = exchange_calendar()
    opened = cal.session_open(_ts(day))
    closed = cal.session_close(_ts(day))
    count = int((closed - opened).total_seconds() // 60)
    start = opened.to_pydatetime()
    return tuple(start + dt.timedelta(minutes=i) for i in range(count))


def session_close(day: dt.date) -> dt.datetime:
    """When the session of `day` closes, in UTC (13:00 New York on a half day)."""
    if not is_session(day):
        raise InvalidSpec(f"{day} is not a trading session ({EXCHANGE})")
    closed: dt.datetime = exchange_calendar().session_close(_ts(day)).to_pydatetime()
    return closed


def previous_sessions(before: dt.date, count: int) -> list[dt.date]:
    """The `count` sessions strictly before `before`, oldest first (history for warm-up)."""
    cal = exchange_calendar()
    ts = _ts(before)
    anchor = cal.date_to_session(ts, direction="next") if not cal.is_session(ts) else ts
    start = cal.session_offset(anchor, -count)
    return [s.date() for s in cal.sessions_in_range(start, anchor)][:-1][-count:]


def live_session(now: dt.datetime) -> dt.date:
    """The session a live run started at `now` plays: today's until its close, else the
    next one."""
    day = now.astimezone(ZoneInfo(NEW_YORK)).date()
    if is_session(day) and now < session_close(day):
        return day
    cal = exchange_calendar()
    nxt: dt.date = cal.date_to_session(_ts(day + dt.timedelta(days=1)),
                                       direction="next").date()
    return nxt


def today_in_new_york() -> dt.date:
    return dt.datetime.now(ZoneInfo(NEW_YORK)).date()
