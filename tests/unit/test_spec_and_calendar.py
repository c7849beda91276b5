"""Run specs are refused before any step runs; sessions come from the XNYS calendar."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from core import calendar
from core.errors import InvalidSpec
from core.spec import RunSpec
from tests.factories import daily_spec, intraday_spec


def test_a_regular_session_has_390_minutes() -> None:
    minutes = calendar.session_minutes(dt.date(2025, 3, 3))
    assert len(minutes) == 390
    assert minutes[0] == dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)  # 09:30 New York
    assert minutes[-1] == dt.datetime(2025, 3, 3, 20, 59, tzinfo=dt.UTC)


def test_a_half_day_has_210_steps() -> None:
    assert intraday_spec(dt.date(2024, 11, 29)).step_count() == 210  # day after Thanksgiving


def test_a_holiday_is_not_a_session() -> None:
    assert not calendar.is_session(dt.date(2024, 12, 25))
    with pytest.raises(InvalidSpec, match="not a trading session"):
        intraday_spec(dt.date(2024, 12, 25)).check_playable()


def test_a_range_without_sessions_is_a_clear_error() -> None:
    spec = daily_spec(dt.date(2024, 12, 25), dt.date(2024, 12, 25))
    with pytest.raises(InvalidSpec, match="no trading session between"):
        spec.check_playable()


def test_daily_steps_are_the_sessions_of_the_range() -> None:
    assert daily_spec(dt.date(2024, 12, 23), dt.date(2024, 12, 31)).step_count() == 6


def test_future_dates_are_refused() -> None:
    spec = intraday_spec(dt.date(2025, 3, 3))
    with pytest.raises(InvalidSpec, match="in the future"):
        spec.check_playable(today=dt.date(2025, 3, 2))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "intraday", "symbols": ["aapl"], "date": "2025-03-03"}, "pattern"),
        ({"mode": "intraday", "symbols": ["TOOLONGSYM"], "date": "2025-03-03"}, "pattern"),
        ({"mode": "intraday", "symbols": [], "date": "2025-03-03"}, "at least 1"),
        ({"mode": "daily", "symbols": ["AAPL"], "start": "2025-03-03", "end": "2025-03-01"},
         "before `start`"),
        ({"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03", "initial_cash": 0},
         "greater than 0"),
        ({"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03", "initial_cash": -5},
         "greater than 0"),
        ({"mode": "intraday", "symbols": ["AAPL"]}, "take `date`"),
        ({"mode": "daily", "symbols": ["AAPL"], "date": "2025-03-03"}, "take `start`"),
        ({"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03", "colour": "red"},
         "Extra inputs"),
        ({"mode": "weekly", "symbols": ["AAPL"], "date": "2025-03-03"}, "mode"),
        ({"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03", "decider": "replay"},
         "source_run_id"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunSpec.model_validate(fields)


def test_money_is_decimal() -> None:
    spec = RunSpec.model_validate({"mode": "intraday", "symbols": ["BRK.B"],
                                   "date": "2025-03-03", "initial_cash": "1000.10"})
    assert spec.initial_cash == Decimal("1000.10")


def test_a_spec_given_as_a_spec_is_taken_as_validated_and_a_document_is_checked() -> None:
    """A model holding a RunSpec (a run's API document) takes a RunSpec instance as it
    is, validated when it was made; the same spec as data is checked again."""
    class Holder(BaseModel):
        spec: RunSpec

    good = RunSpec.model_validate({"mode": "intraday", "symbols": ["AAPL"],
                                   "date": "2025-03-03"})
    assert Holder(spec=good).spec is good
    # Unvalidated (model_construct): an intraday spec with a daily range.
    bad = RunSpec.model_construct(**{**dict(good), "start": dt.date(2025, 3, 3)})
    assert Holder(spec=bad).spec is bad
    with pytest.raises(ValidationError, match="intraday runs take `date`"):
        Holder(spec=bad.model_dump())


def test_the_calendars_kept_answers_are_each_callers_own() -> None:
    """Sessions and minutes are kept per process (the calendar does not change); a
    caller that changes the list it got changes nobody else's, and a refusal stays one."""
    days = calendar.sessions_in_range(dt.date(2024, 12, 20), dt.date(2024, 12, 31))
    assert dt.date(2024, 12, 25) not in days and len(days) == 7
    days.clear()
    assert len(calendar.sessions_in_range(dt.date(2024, 12, 20), dt.date(2024, 12, 31))) == 7
    minutes = calendar.session_minutes(dt.date(2024, 12, 24))  # a half day
    assert len(minutes) == 210
    minutes.append(minutes[0])
    assert len(calendar.session_minutes(dt.date(2024, 12, 24))) == 210
    for _ in range(2):
        with pytest.raises(InvalidSpec, match="not a trading session"):
            calendar.session_minutes(dt.date(2024, 12, 25))
        with pytest.raises(InvalidSpec, match="no trading session"):
            calendar.sessions_in_range(dt.date(2024, 12, 25), dt.date(2024, 12, 25))
