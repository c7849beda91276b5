"""When a schedule fires and what each fire plays: cron in New York time, XNYS sessions
only (the calendar's holidays and half days, never a hand-written table)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from core.errors import InvalidSpec
from core.schedule import (
    NEW_YORK,
    SessionRule,
    check_cron,
    due_between,
    next_fires,
    session_of,
    spec_for,
)
from core.spec import Mode

D = dt.date


def ny(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK)


def local(fires: list[dt.datetime]) -> list[str]:
    return [f.astimezone(NEW_YORK).strftime("%a %m-%d %H:%M") for f in fires]


# Thanksgiving week 2025: Thu 11-27 closed, Fri 11-28 closes at 13:00, then a weekend.
def test_a_daily_rule_skips_the_holiday_and_the_weekend_and_keeps_the_half_day() -> None:
    fires = next_fires("25 9 * * *", ny(D(2025, 11, 26), 0), 4)
    assert local(fires) == ["Wed 11-26 09:25", "Fri 11-28 09:25", "Mon 12-01 09:25",
                            "Tue 12-02 09:25"]
    assert all(f.tzinfo == dt.UTC for f in fires)


def test_fires_are_new_york_wall_clock_across_daylight_saving() -> None:
    # 2025-11-03: New York went from EDT (UTC-4) to EST (UTC-5) the day before.
    fires = next_fires("30 16 * * 1-5", ny(D(2025, 10, 31), 17), 2)
    assert [f.hour for f in fires] == [21, 21]  # 16:30 EST on Mon 11-03 and Tue 11-04
    fires = next_fires("30 16 * * 1-5", ny(D(2025, 10, 30), 17), 1)
    assert fires[0] == dt.datetime(2025, 10, 31, 20, 30, tzinfo=dt.UTC)  # 16:30 EDT


def test_a_weekly_rule_on_a_holiday_friday_does_not_fire_that_week() -> None:
    # Good Friday 2025-04-18 is closed: the Friday rule fires on 04-11 and 04-25 only.
    fires = next_fires("30 16 * * 5", ny(D(2025, 4, 10), 0), 2)
    assert local(fires) == ["Fri 04-11 16:30", "Fri 04-25 16:30"]


def test_due_between_is_half_open_and_bounded() -> None:
    start = ny(D(2025, 11, 26), 9, 25)  # exactly a fire: not due again
    due = due_between("25 9 * * *", start, ny(D(2025, 12, 1), 9, 25), limit=10)
    assert local(due) == ["Fri 11-28 09:25", "Mon 12-01 09:25"]
    minutely = due_between("* * * * *", ny(D(2025, 11, 26), 0), ny(D(2025, 12, 1), 0), 100)
    assert len(minutely) == 100 and local(minutely)[0] == "Wed 11-26 00:01"


def test_a_minutely_rule_passes_over_closed_days_without_walking_their_minutes() -> None:
    due = due_between("* * * * *", ny(D(2025, 11, 26), 23, 58), ny(D(2025, 12, 1), 0, 2), 10)
    assert local(due) == ["Wed 11-26 23:59", "Fri 11-28 00:00", "Fri 11-28 00:01",
                          "Fri 11-28 00:02", "Fri 11-28 00:03", "Fri 11-28 00:04",
                          "Fri 11-28 00:05", "Fri 11-28 00:06", "Fri 11-28 00:07",
                          "Fri 11-28 00:08"]


@pytest.mark.parametrize("cron", ["0 12 * * 0", "0 12 * * 6", "0 0 30 2 *"])
def test_a_rule_that_never_falls_on_a_session_has_no_fires(cron: str) -> None:
    assert next_fires(cron, ny(D(2025, 1, 1), 0), 1) == []


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "* * * * * *", "@reboot", "",
                                  "every day"])
def test_check_cron_refuses_what_is_not_five_fields(cron: str) -> None:
    with pytest.raises(InvalidSpec):
        check_cron(cron)


def test_check_cron_takes_fields_and_aliases() -> None:
    for cron in ("25 9 * * 1-5", "*/15 10-15 * * mon-fri", "@daily"):
        check_cron(cron)


def test_the_session_a_fire_plays_follows_the_close_of_the_day() -> None:
    last = SessionRule.LAST_CLOSED
    # Half day: closed at 13:00, so at 13:30 that day's session is the last closed.
    assert session_of(ny(D(2025, 11, 28), 13, 30), last) == D(2025, 11, 28)
    assert session_of(ny(D(2025, 11, 28), 12, 30), last) == D(2025, 11, 26)
    # A full day at 13:30 is still open: the day before's (Monday's is Friday's).
    assert session_of(ny(D(2025, 12, 1), 13, 30), last) == D(2025, 11, 28)
    assert session_of(ny(D(2025, 12, 1), 16, 0), last) == D(2025, 12, 1)
    assert session_of(ny(D(2025, 12, 1), 9, 25), SessionRule.TODAY) == D(2025, 12, 1)


def test_an_intraday_fire_on_the_half_day_plays_its_210_minutes() -> None:
    template = {"mode": "intraday", "symbols": ["AAPL"], "data": "synthetic",
                "session": "today", "decider": "sma_crossover"}
    spec = spec_for(template, ny(D(2025, 11, 28), 9, 25))
    assert (spec.mode, spec.date, spec.step_count()) == (Mode.INTRADAY, D(2025, 11, 28), 210)
    assert spec.decider is not None and spec.decider.value == "sma_crossover"


def test_a_weekly_backtest_spans_its_sessions_back_from_the_last_closed() -> None:
    template = {"mode": "daily", "symbols": ["MSFT"], "data": "synthetic", "sessions": 5}
    spec = spec_for(template, ny(D(2025, 11, 28), 16, 30))  # Friday, after its 13:00 close
    assert (spec.start, spec.end, spec.step_count()) == (D(2025, 11, 21), D(2025, 11, 28), 5)
    one = spec_for({**template, "sessions": 1}, ny(D(2025, 12, 1), 9, 0))
    assert (one.start, one.end) == (D(2025, 11, 28), D(2025, 11, 28))


def test_a_template_that_is_no_run_is_refused() -> None:
    with pytest.raises(ValidationError):
        spec_for({"mode": "intraday", "symbols": [], "session": "today"},
                 ny(D(2025, 12, 1), 9, 25))
    with pytest.raises(InvalidSpec, match="outside the exchange calendar"):
        spec_for({"mode": "intraday", "symbols": ["AAPL"], "session": "today"},
                 ny(dt.date.today() + dt.timedelta(days=800), 9, 25))


def test_a_fire_before_the_close_of_the_session_it_plays_is_no_run_on_provider_data() -> None:
    template = {"mode": "intraday", "symbols": ["AAPL"], "data": "polygon", "session": "today"}
    with pytest.raises(InvalidSpec, match="has not closed yet"):
        spec_for(template, ny(D(2025, 12, 1), 9, 25))
    assert spec_for(template, ny(D(2025, 12, 1), 16, 5)).date == D(2025, 12, 1)
    # Synthetic bars need no close.
    assert spec_for({**template, "data": "synthetic"}, ny(D(2025, 12, 1), 9, 25)).date


def test_a_live_template_fires_a_live_run_of_the_fires_own_session() -> None:
    template = {"mode": "intraday", "symbols": ["AAPL"], "data": "alpaca",
                "live": {"broker": "sim"}}
    spec = spec_for(template, ny(D(2025, 11, 28), 9, 25))  # before the half day opens
    assert spec.date == D(2025, 11, 28) and spec.live is not None
    assert spec.fill.value == "close" and spec.step_count() == 210
    # Fired after that session's close, it would play the next one: no run.
    with pytest.raises(InvalidSpec, match="a live run plays the session live now, "
                                          "2025-12-01"):
        spec_for(template, ny(D(2025, 11, 28), 13, 30))
