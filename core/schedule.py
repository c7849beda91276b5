"""Schedules: when one fires, and the run each fire makes.

A schedule's rule is a cron expression read in New York time (croniter does the cron
arithmetic, daylight saving included); its fires fall only on XNYS sessions, so a
holiday or a weekend never makes a run. What a fire plays is the session its
`session` rule names, from the exchange calendar: that day's (`today`) or the latest
one closed by the fire time (`last_closed`: at 13:30 on a half day, that day's; at
13:30 on a full day, the day before's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from core import calendar
from core.errors import InvalidSpec
from core.marketdata.sessions import require_closed
from core.spec import Mode, RunSpec

NEW_YORK = ZoneInfo(calendar.NEW_YORK)
# How far a rule is searched for a session fire before it is called one that never fires
# (Feb 30, or Sundays only): beyond any real schedule's gap between two fires.
SEARCH_DAYS = 400


class SessionRule(StrEnum):
    TODAY = "today"  # the session of the fire's New York date
    LAST_CLOSED = "last_closed"  # the latest session closed at the fire time


def check_cron(cron: str) -> None:
    """Five fields (minute hour day month weekday) or a croniter alias such as @daily;
    InvalidSpec otherwise."""
    fields = cron.split()
    if not (len(fields) == 5 or (len(fields) == 1 and cron.strip() in _ALIASES)):
        raise InvalidSpec(f"{cron!r} is not five fields (minute hour day month weekday, "
                          "read in America/New_York) or an alias such as @daily")
    if not croniter.is_valid(cron):
        raise InvalidSpec(f"{cron!r} is not a valid cron expression")


_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def fires_after(cron: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """The rule's fire times strictly after `after` (aware), oldest first, in UTC: the
    cron's times whose New York date is an XNYS session. Stops after SEARCH_DAYS of
    closed days in a row, or at the end of the exchange calendar (about a year ahead)."""
    local = after.astimezone(NEW_YORK)
    times = croniter(cron, local)
    closed_since: dt.date | None = None
    while True:
        try:
            fire: dt.datetime = times.get_next(dt.datetime)
            open_day = calendar.is_session(day := fire.date())
        except (CroniterBadDateError, InvalidSpec):  # never again, or past the calendar
            return
        if open_day:
            closed_since = None
            yield fire.astimezone(dt.UTC)
            continue
        closed_since = closed_since or day
        if (day - closed_since).days > SEARCH_DAYS:
            return
        # A closed day: go on from the next midnight rather than through its every time.
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), NEW_YORK)
        times = croniter(cron, midnight - dt.timedelta(seconds=1))


def next_fires(cron: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    fires: list[dt.datetime] = []
    for fire in fires_after(cron, after):
        fires.append(fire)
        if len(fires) == count:
            break
    return fires


def due_between(cron: str, after: dt.datetime, until: dt.datetime,
                limit: int) -> list[dt.datetime]:
    """The fires in (after, until], oldest first, at most `limit` of them."""
    due: list[dt.datetime] = []
    for fire in fires_after(cron, after):
        if fire > until or len(due) == limit:
            break
        due.append(fire)
    return due


def session_of(fire: dt.datetime, rule: SessionRule) -> dt.date:
    """The session a fire plays: the fire's New York date (a session, as every fire's
    is), or the latest session whose close is at or before the fire."""
    day = fire.astimezone(NEW_YORK).date()
    if rule is SessionRule.TODAY:
        return day
    if calendar.is_session(day) and calendar.session_close(day) <= fire:
        return day
    return calendar.previous_sessions(day, 1)[0]


def spec_for(template: dict[str, Any], fire: dt.datetime) -> RunSpec:
    """The run a fire makes from its schedule's template: the run spec's options plus
    `mode`, `symbols`, `session` and (daily) `sessions`, the backtest's length ending at
    the session the fire plays. InvalidSpec or a ValidationError when it is no run."""
    options = {k: v for k, v in template.items() if k not in ("session", "sessions")}
    live = template.get("live") is not None  # a live run plays the fire's own session
    rule = template.get("session", SessionRule.TODAY if live else SessionRule.LAST_CLOSED)
    last = session_of(fire, SessionRule(rule))
    if Mode(template["mode"]) is Mode.INTRADAY:
        spec = RunSpec.model_validate({**options, "date": last})
    else:
        count = int(template.get("sessions", 5))
        first = (calendar.previous_sessions(last, count - 1)[0] if count > 1 else last)
        spec = RunSpec.model_validate({**options, "start": first, "end": last})
    spec.check_playable(today=fire.astimezone(NEW_YORK).date(), now=fire)
    if spec.live is None and (spec.data is None or spec.data.is_provider):
        # A provider's bars are final only after the close: `today` before it is no run.
        require_closed([last], now=fire)
    return spec
