"""Point in time: the instant a decision is made as of.

A decision on a bar is made when that bar has closed: a minute bar starting at 09:30
ends at 09:31; a daily bar ends at its session's close (16:00 New York, 13:00 on a half
day). Every research answer ends there: an item known one second later is the future.
"""

from __future__ import annotations

import datetime as dt

from core.calendar import session_close

MINUTE = dt.timedelta(minutes=1)


def bar_end(interval: str, bar_time: dt.datetime) -> dt.datetime:
    """The end of the bar starting at `bar_time` (timezone-aware), in UTC."""
    if interval == "1m":
        return (bar_time + MINUTE).astimezone(dt.UTC)
    # A daily bar's time is its session's date at midnight: UTC on the runner's
    # timeline, New York from a provider; both fall on the session's UTC date.
    return session_close(bar_time.astimezone(dt.UTC).date()).astimezone(dt.UTC)
