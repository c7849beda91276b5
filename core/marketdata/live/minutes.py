"""Which minutes of a live session are closed, with the bar each symbol's provider sent
or a gap where it sent none: decided by an injected clock, never by sleeping.

`MinuteBook` is pure: it is told the session's minutes (core.calendar.session_minutes),
the symbols, a clock (a callable returning the UTC now) and a grace, and is handed the
bars as they arrive (`add`). `closed()` releases the minutes it can decide at the
clock's now, strictly in order, each once:

- a minute is never released before its end (start + 1 minute) by the clock;
- it is released as soon as every symbol has its bar;
- a symbol without a bar is a gap once the clock passes the minute's end plus the grace
  (default 5 s), or as soon as a bar of a later minute of that symbol arrived (a
  stream delivers a symbol's bars in order: the missing one is not coming);
- a bar for a minute already released is late: kept aside (`late`), it changes
  nothing that was decided; a bar outside the session's minutes, of another symbol or
  not on a minute boundary is ignored and counted.

`follow` drives a book from a LiveBarFeed: it yields each closed minute and each
connection event, reads every event the feed holds already before deciding (a bar that
came while the consumer was busy is not a gap), and waits on the feed's queue (never
longer than `poll` seconds or the time to the next decision by the clock), so a clock
that runs fast in a test plays a session in a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from core.bars import Bar
from core.marketdata.live.base import (
    DEFAULT_GRACE,
    Connected,
    Disconnected,
    LiveBar,
    LiveEvent,
)

Clock = Callable[[], dt.datetime]
MINUTE = dt.timedelta(minutes=1)
DEFAULT_POLL_SECONDS = 1.0
QUEUED_AT_ONCE = 10_000  # events `follow` reads off a feed before deciding, at most


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Placement(StrEnum):
    ACCEPTED = "accepted"
    REPLACED = "replaced"  # a second bar for a pending minute: the later one stands
    LATE = "late"  # its minute was released already
    OUTSIDE = "outside"  # not one of the session's minutes
    UNKNOWN_SYMBOL = "unknown_symbol"


@dataclass(frozen=True)
class ClosedMinute:
    """One closed minute: the bars that came, and the symbols whose bar never did."""

    minute: dt.datetime  # its start, UTC
    bars: Mapping[str, Bar]
    gaps: tuple[str, ...] = ()

    @property
    def end(self) -> dt.datetime:
        return self.minute + MINUTE

    @property
    def complete(self) -> bool:
        return not self.gaps

    def bar(self, symbol: str) -> Bar | None:
        return self.bars.get(symbol)


@dataclass
class MinuteBook:
    minutes: Sequence[dt.datetime]
    symbols: Iterable[str]
    clock: Clock = utc_now
    grace: dt.timedelta = DEFAULT_GRACE
    late: list[LiveBar] = field(default_factory=list)
    ignored: Counter[Placement] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.grace < dt.timedelta(0):
            raise ValueError("the grace cannot be negative")
        self.minutes = sorted(_utc(m) for m in self.minutes)
        if len(set(self.minutes)) != len(self.minutes):
            raise ValueError("the session's minutes repeat")
        self.symbols = tuple(dict.fromkeys(s.upper() for s in self.symbols))
        if not self.symbols:
            raise ValueError("a minute book needs at least one symbol")
        self._index = {m: i for i, m in enumerate(self.minutes)}
        self._next = 0  # the first minute not released yet
        self._pending: dict[int, dict[str, Bar]] = {}
        self._latest: dict[str, int] = {}  # per symbol, the latest minute a bar came for

    @property
    def done(self) -> bool:
        """Every minute of the session is released."""
        return self._next >= len(self.minutes)

    @property
    def pending(self) -> dt.datetime | None:
        """The first minute not released yet (None when done)."""
        return None if self.done else self.minutes[self._next]

    def add(self, live: LiveBar) -> Placement:
        symbol = live.symbol.upper()
        if symbol not in self.symbols:
            return self._ignore(Placement.UNKNOWN_SYMBOL)
        index = self._index.get(_utc(live.bar.time))
        if index is None:
            return self._ignore(Placement.OUTSIDE)
        if index < self._next:
            self.late.append(live)
            return Placement.LATE
        bars = self._pending.setdefault(index, {})
        placement = Placement.REPLACED if symbol in bars else Placement.ACCEPTED
        bars[symbol] = live.bar
        self._latest[symbol] = max(index, self._latest.get(symbol, index))
        return placement

    def closed(self) -> list[ClosedMinute]:
        """The minutes decided at the clock's now, in order, each released once."""
        now = _utc(self.clock())
        released: list[ClosedMinute] = []
        while not self.done:
            minute = self.minutes[self._next]
            end = minute + MINUTE
            if now < end:
                break
            bars = self._pending.get(self._next, {})
            missing = [s for s in self.symbols if s not in bars]
            overdue = now >= end + self.grace
            if missing and not overdue and not all(
                    self._latest.get(s, -1) > self._next for s in missing):
                break
            released.append(ClosedMinute(minute, MappingProxyType(dict(bars)),
                                         tuple(missing)))
            self._pending.pop(self._next, None)
            self._next += 1
        return released

    def next_decision(self) -> dt.datetime | None:
        """The latest clock time at which the pending minute will be decided (its end
        plus the grace); it may be decided earlier, as its bars arrive."""
        pending = self.pending
        return None if pending is None else pending + MINUTE + self.grace

    def wait_seconds(self, limit: float) -> float:
        """How long a consumer may wait for a bar before asking `closed()` again: until
        the pending minute's end, then until its grace runs out, at most `limit`."""
        pending = self.pending
        if pending is None:
            return 0.0
        now = _utc(self.clock())
        end = pending + MINUTE
        target = end if now < end else end + self.grace
        return max(0.0, min(limit, (target - now).total_seconds()))

    def _ignore(self, placement: Placement) -> Placement:
        self.ignored[placement] += 1
        return placement


Followed = ClosedMinute | Connected | Disconnected


class EventSource(Protocol):
    """What `follow` reads: a LiveBarFeed (or a test's stand-in)."""

    def get(self, timeout: float | None = None) -> LiveEvent | None: ...


def queued_events(feed: EventSource) -> Iterator[LiveEvent]:
    """The events the feed holds already, without waiting (QUEUED_AT_ONCE at most):
    read before the book decides which minutes closed, so a bar that came in time while
    its consumer was busy (a slow decision, a starved process) is no gap."""
    for _ in range(QUEUED_AT_ONCE):
        event = feed.get(timeout=0)
        if event is None:
            return
        yield event


def follow(feed: EventSource, book: MinuteBook, *,
           poll: float = DEFAULT_POLL_SECONDS) -> Iterator[Followed]:
    """Each closed minute of `book` as the feed's bars and the clock decide it, and each
    connection event of the feed, until the session's last minute is released.
    ProviderRefused from the feed propagates."""
    while True:
        for queued in queued_events(feed):
            if isinstance(queued, LiveBar):
                book.add(queued)
            else:
                yield queued
        yield from book.closed()
        if book.done:
            return
        event = feed.get(timeout=book.wait_seconds(poll))
        if isinstance(event, LiveBar):
            book.add(event)
        elif event is not None:
            yield event


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError(f"a time without a timezone: {when!r}")
    return when.astimezone(dt.UTC)
