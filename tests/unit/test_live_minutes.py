"""core.marketdata.live.minutes: closed minutes and gaps, decided by an injected clock."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from core.bars import Bar
from core.calendar import session_minutes
from core.marketdata.live.base import Connected, Disconnected, LiveBar, LiveBarFeed, LiveEvent
from core.marketdata.live.minutes import (
    DEFAULT_GRACE,
    MINUTE,
    ClosedMinute,
    MinuteBook,
    Placement,
    follow,
)

OPEN = dt.datetime(2025, 6, 2, 13, 30, tzinfo=dt.UTC)  # a Monday's open, 09:30 New York
MINUTES = [OPEN + i * MINUTE for i in range(5)]
SECOND = dt.timedelta(seconds=1)


class Clock:
    """The test's clock: it moves only when the test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, when: dt.datetime) -> Clock:
        self.now = when
        return self


def bar(minute: dt.datetime, close: str = "100.25") -> Bar:
    price = Decimal(close)
    return Bar(minute, price, price, price, price, Decimal(100))


def live(symbol: str, minute: dt.datetime, close: str = "100.25") -> LiveBar:
    return LiveBar(symbol, bar(minute, close))


def book(clock: Clock, symbols: tuple[str, ...] = ("AAPL",), **kwargs: object) -> MinuteBook:
    return MinuteBook(MINUTES, symbols, clock, **kwargs)  # type: ignore[arg-type]


def test_a_minute_is_not_closed_before_its_end_even_with_its_bar() -> None:
    clock = Clock(OPEN + 30 * SECOND)
    b = book(clock)
    assert b.add(live("AAPL", OPEN)) is Placement.ACCEPTED
    assert b.closed() == []
    clock.at(OPEN + MINUTE - dt.timedelta(microseconds=1))
    assert b.closed() == []
    clock.at(OPEN + MINUTE)
    [closed] = b.closed()
    assert closed.minute == OPEN and closed.end == OPEN + MINUTE
    assert closed.bar("AAPL") == bar(OPEN) and closed.complete and closed.gaps == ()
    assert b.closed() == []  # released once
    assert b.pending == MINUTES[1]


def test_a_minute_closes_as_soon_as_every_symbol_has_its_bar() -> None:
    clock = Clock(OPEN + MINUTE + SECOND)
    b = book(clock, ("AAPL", "MSFT"))
    b.add(live("AAPL", OPEN))
    assert b.closed() == []  # MSFT may still come, within the grace
    b.add(live("MSFT", OPEN, "420.5"))
    [closed] = b.closed()
    assert dict(closed.bars) == {"AAPL": bar(OPEN), "MSFT": bar(OPEN, "420.5")}


def test_a_symbol_without_a_bar_is_a_gap_once_the_grace_has_passed() -> None:
    assert MinuteBook(MINUTES, ["AAPL"]).grace == dt.timedelta(seconds=5)
    clock = Clock(OPEN + MINUTE)
    b = book(clock, ("AAPL", "MSFT"))
    b.add(live("AAPL", OPEN))
    clock.at(OPEN + MINUTE + DEFAULT_GRACE - dt.timedelta(microseconds=1))
    assert b.closed() == []
    clock.at(OPEN + MINUTE + DEFAULT_GRACE)
    [closed] = b.closed()
    assert closed.gaps == ("MSFT",) and not closed.complete
    assert closed.bar("MSFT") is None and closed.bar("AAPL") == bar(OPEN)


def test_the_grace_is_a_setting() -> None:
    clock = Clock(OPEN + MINUTE + 2 * SECOND)
    b = book(clock, grace=2 * SECOND)
    [closed] = b.closed()
    assert closed.gaps == ("AAPL",)
    with pytest.raises(ValueError, match="negative"):
        book(clock, grace=-SECOND)


def test_a_later_bar_of_the_symbol_makes_the_missing_minute_a_gap_at_once() -> None:
    clock = Clock(OPEN + 2 * MINUTE + SECOND)  # minute 1 has ended, within its grace
    b = book(clock, ("AAPL", "MSFT"))
    b.add(live("AAPL", OPEN))
    b.add(live("MSFT", MINUTES[1]))  # MSFT skipped minute 0: it is not coming
    [first] = b.closed()
    assert first.minute == OPEN and first.gaps == ("MSFT",)
    assert b.closed() == []  # minute 1 still waits for AAPL
    b.add(live("AAPL", MINUTES[1]))
    [second] = b.closed()
    assert second.minute == MINUTES[1] and second.complete


def test_minutes_are_released_in_order_when_the_clock_jumps() -> None:
    clock = Clock(OPEN)
    b = book(clock)
    b.add(live("AAPL", MINUTES[0], "1"))
    b.add(live("AAPL", MINUTES[2], "3"))
    clock.at(MINUTES[3] + MINUTE + DEFAULT_GRACE)
    closed = b.closed()
    assert [c.minute for c in closed] == MINUTES[:4]
    assert [c.gaps for c in closed] == [(), ("AAPL",), (), ("AAPL",)]
    assert closed[2].bar("AAPL") == bar(MINUTES[2], "3")
    assert not b.done


def test_the_session_is_done_after_its_last_minute() -> None:
    clock = Clock(MINUTES[-1] + MINUTE + DEFAULT_GRACE)
    b = book(clock)
    assert len(b.closed()) == len(MINUTES)
    assert b.done and b.pending is None and b.next_decision() is None
    assert b.closed() == [] and b.wait_seconds(1.0) == 0.0


def test_a_bar_for_a_released_minute_is_late_and_changes_nothing() -> None:
    clock = Clock(OPEN + MINUTE + DEFAULT_GRACE)
    b = book(clock)
    [gap] = b.closed()
    late = live("AAPL", OPEN)
    assert b.add(late) is Placement.LATE
    assert b.late == [late]
    assert b.closed() == [] and gap.gaps == ("AAPL",)


def test_bars_outside_the_session_or_of_other_symbols_are_ignored_and_counted() -> None:
    clock = Clock(OPEN)
    b = book(clock)
    assert b.add(live("AAPL", OPEN - MINUTE)) is Placement.OUTSIDE  # pre-market
    assert b.add(live("AAPL", OPEN + 30 * SECOND)) is Placement.OUTSIDE  # not a minute
    assert b.add(live("TSLA", OPEN)) is Placement.UNKNOWN_SYMBOL
    assert b.ignored == {Placement.OUTSIDE: 2, Placement.UNKNOWN_SYMBOL: 1}
    clock.at(OPEN + MINUTE + DEFAULT_GRACE)
    assert b.closed()[0].gaps == ("AAPL",)


def test_a_second_bar_for_a_pending_minute_replaces_the_first() -> None:
    clock = Clock(OPEN + MINUTE)
    b = book(clock, ("AAPL", "MSFT"))
    assert b.add(live("AAPL", OPEN, "1")) is Placement.ACCEPTED
    assert b.add(live("aapl", OPEN, "2")) is Placement.REPLACED  # symbols are upper-cased
    b.add(live("MSFT", OPEN))
    assert b.closed()[0].bar("AAPL") == bar(OPEN, "2")


def test_times_must_carry_a_timezone() -> None:
    clock = Clock(OPEN)
    b = book(clock)
    with pytest.raises(ValueError, match="timezone"):
        b.add(live("AAPL", OPEN.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="timezone"):
        MinuteBook([OPEN.replace(tzinfo=None)], ["AAPL"], clock)
    with pytest.raises(ValueError, match="symbol"):
        MinuteBook(MINUTES, [], clock)


def test_times_in_other_zones_are_the_same_instants() -> None:
    new_york = dt.timezone(dt.timedelta(hours=-4))
    clock = Clock((OPEN + MINUTE).astimezone(new_york))
    b = book(clock)
    b.add(LiveBar("AAPL", bar(OPEN.astimezone(new_york))))
    [closed] = b.closed()
    assert closed.minute == OPEN and closed.minute.tzinfo == dt.UTC


def test_how_long_a_consumer_may_wait() -> None:
    clock = Clock(OPEN + 50 * SECOND)
    b = book(clock)
    assert b.wait_seconds(60.0) == 10.0  # until the minute's end
    assert b.wait_seconds(1.0) == 1.0  # at most the poll
    clock.at(OPEN + MINUTE + 2 * SECOND)
    assert b.wait_seconds(60.0) == 3.0  # until the grace runs out
    clock.at(OPEN + MINUTE + 9 * SECOND)
    assert b.wait_seconds(60.0) == 0.0
    assert b.next_decision() == OPEN + MINUTE + DEFAULT_GRACE


def test_a_whole_session_and_a_half_day_from_the_calendar() -> None:
    for day, count in ((dt.date(2025, 6, 2), 390), (dt.date(2025, 11, 28), 210)):
        minutes = session_minutes(day)
        clock = Clock(minutes[0])
        b = MinuteBook(minutes, ["AAPL"], clock)
        released: list[ClosedMinute] = []
        for i, minute in enumerate(minutes):
            if i % 7 != 3:  # every seventh minute never comes
                b.add(live("AAPL", minute))
            clock.at(minute + MINUTE)
            released += b.closed()
        clock.at(minutes[-1] + MINUTE + DEFAULT_GRACE)
        released += b.closed()
        assert b.done and len(released) == count
        assert [c.minute for c in released] == minutes
        gaps = [c.minute for c in released if c.gaps]
        assert gaps == [m for i, m in enumerate(minutes) if i % 7 == 3]


class ScriptedFeed(LiveBarFeed):
    """A feed whose events the test scripts per clock time; waiting moves the clock (a
    session plays in no wall time at all)."""

    provider = "script"

    def __init__(self, clock: Clock, script: list[tuple[dt.datetime, LiveEvent]]) -> None:
        super().__init__()
        self.clock = clock
        self.script = sorted(script, key=lambda item: item[0])
        self.waits: list[float] = []

    async def _stream(self, symbols: tuple[str, ...]) -> None:
        raise AssertionError("never started")

    def get(self, timeout: float | None = None) -> LiveEvent | None:
        assert timeout is not None
        self.waits.append(timeout)
        if self.script and self.script[0][0] <= self.clock.now + dt.timedelta(seconds=timeout):
            when, event = self.script.pop(0)
            self.clock.at(max(self.clock.now, when))
            return event
        self.clock.at(self.clock.now + dt.timedelta(seconds=timeout))
        return None


def test_follow_yields_minutes_gaps_and_connection_events() -> None:
    clock = Clock(OPEN)
    after = dt.timedelta(milliseconds=400)  # the provider's latency past a minute's end
    script: list[tuple[dt.datetime, LiveEvent]] = [
        (OPEN, Connected("script", 1)),
        (MINUTES[0] + MINUTE + after, live("AAPL", MINUTES[0], "10.01")),
        (MINUTES[1] + 30 * SECOND, Disconnected("script", "dropped")),
        (MINUTES[2] + 2 * SECOND, Connected("script", 2)),  # within minute 1's grace
        # minute 1 was never sent (the stream was down); minute 3 is sent late, minute 4
        # not at all
        (MINUTES[2] + MINUTE + after, live("AAPL", MINUTES[2], "10.03")),
        (MINUTES[3] + MINUTE + 2 * SECOND, live("AAPL", MINUTES[3], "10.04")),
    ]
    feed = ScriptedFeed(clock, script)
    b = MinuteBook(MINUTES, ["AAPL"], clock)
    seen = list(follow(feed, b, poll=1.0))
    kinds = [s if not isinstance(s, ClosedMinute) else (s.minute, s.gaps) for s in seen]
    assert kinds == [
        Connected("script", 1),
        (MINUTES[0], ()),
        Disconnected("script", "dropped"),
        Connected("script", 2),
        (MINUTES[1], ("AAPL",)),
        (MINUTES[2], ()),
        (MINUTES[3], ()),
        (MINUTES[4], ("AAPL",)),
    ]
    closes = [s.bar("AAPL") for s in seen if isinstance(s, ClosedMinute)]
    assert [c.close if c else None for c in closes] == [
        Decimal("10.01"), None, Decimal("10.03"), Decimal("10.04"), None]
    assert max(feed.waits) <= 1.0
    assert clock.now == MINUTES[4] + MINUTE + DEFAULT_GRACE  # decided the moment it could be


class QueuedFeed:
    """A feed whose bars all came already (its queue), read while the clock stands."""

    def __init__(self, events: list[LiveEvent]) -> None:
        self.events = events

    def get(self, timeout: float | None = None) -> LiveEvent | None:
        return self.events.pop(0) if self.events else None


def test_bars_queued_while_the_consumer_was_busy_are_no_gaps() -> None:
    """The consumer comes back three minutes late (a slow decision, a starved process):
    the bars that came in time are in the feed's queue, read before the book decides."""
    late = Clock(MINUTES[2] + MINUTE + DEFAULT_GRACE + 10 * SECOND)
    feed = QueuedFeed([live("AAPL", m, f"10.0{i}") for i, m in enumerate(MINUTES[:3])])
    b = MinuteBook(MINUTES, ["AAPL"], late)
    seen = list(itertools.islice(follow(feed, b, poll=1.0), 3))
    assert [(s.minute, s.gaps) for s in seen if isinstance(s, ClosedMinute)] == [
        (MINUTES[0], ()), (MINUTES[1], ()), (MINUTES[2], ())]
    closes = [s.bar("AAPL") for s in seen if isinstance(s, ClosedMinute)]
    assert [c.close if c else None for c in closes] == [
        Decimal("10.00"), Decimal("10.01"), Decimal("10.02")]
