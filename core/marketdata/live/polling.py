"""Live minute bars by polling a provider's REST bars endpoint, for live runs where no
stream is configured (TICKRUN_LIVE_BARS=poll).

Every `interval` seconds of the clock (and at each minute's end, so that a closed
minute is asked for at once), the feed asks the provider (core.marketdata.providers,
through `BarProvider.fetch_minutes`: the official clients, their retry policy and
refusal mapping) for each symbol's minute bars of today's regular session, from the
minute after the last one it emitted for that symbol (or the session's open) up to
now. A provider answers the minute still forming too: only a bar whose minute has
ended by the clock (start + 1 minute <= now) is emitted, and each is emitted once, in
order, per symbol. The range is asked of the provider directly: the day has not
closed, so the bar cache (which refuses an unclosed day) is not on this path.

Events, as the stream feeds': `Connected(provider, attempt)` after the first poll
that succeeded and again after a streak of failures ends (attempt + 1);
`Disconnected(provider, reason)` when a poll fails for a reason that may pass (429,
5xx, unreachable past the poll's deadline: ProviderUnavailable), once per streak,
retried on the next interval; a refusal for good (a wrong key, a plan without the
data) ends the feed with ProviderRefused naming the setting, never the key.

A poll fetches every symbol before it emits anything (minute by minute, each
minute's symbols together): a poll that fails halfway emits nothing, and the next asks
again from the same minutes.

Its `grace` (the wait before a minute's missing bar is a gap, for the consumer's
MinuteBook) covers the poll after a minute's end and the next one: an interval plus
6 s.

`wall_seconds` converts the clock's seconds to the wall's (runner.live.clock
LiveClock.wall_seconds), so a scaled clock polls as fast as it runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from functools import lru_cache
from zoneinfo import ZoneInfo

from core import calendar
from core.bars import Bar
from core.errors import ProviderRefused, ProviderUnavailable
from core.marketdata.live.base import DEFAULT_GRACE, LiveBarFeed
from core.marketdata.providers.base import BarProvider

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
NEW_YORK = ZoneInfo(calendar.NEW_YORK)
MINUTE = dt.timedelta(minutes=1)
DEFAULT_INTERVAL = 5.0  # seconds of the clock between polls
# After a minute's end, how long (of the clock) before it is asked for: a provider
# serves a minute's final bar a moment after the minute ends.
SETTLE = dt.timedelta(seconds=1)
# One poll's fetch may retry within this many wall seconds (at least; the interval if
# longer): past it, the poll fails and the next interval tries again.
MIN_POLL_DEADLINE = 2.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def same_seconds(seconds: float) -> float:
    return max(0.0, seconds)


def poll_deadline(interval_wall_seconds: float, configured: float) -> float:
    """The fetch deadline of one poll: about an interval, never more than `configured`."""
    return min(configured, max(MIN_POLL_DEADLINE, interval_wall_seconds))


class PollingFeed(LiveBarFeed):
    """The closed minutes of today's session, polled from a REST provider."""

    def __init__(self, provider: BarProvider, *, interval: float = DEFAULT_INTERVAL,
                 clock: Clock = utc_now,
                 wall_seconds: Callable[[float], float] = same_seconds) -> None:
        super().__init__()
        if interval <= 0:
            raise ValueError("a polling interval must be positive")
        self.provider = provider.source
        self._bars = provider
        self.interval = interval
        # A minute's bar is asked for just after its end, and once more an interval
        # later should the provider not have had it yet; each poll takes a moment.
        self.grace = SETTLE + dt.timedelta(seconds=interval) + DEFAULT_GRACE
        self._clock = clock
        self._wall_seconds = wall_seconds
        self._emitted: dict[str, dt.datetime] = {}  # per symbol, the last minute emitted
        self._failing = False  # the last poll failed (a Disconnected was emitted)

    async def _stream(self, symbols: tuple[str, ...]) -> None:
        while not self._closing.is_set():
            started = self._now()
            if not self._poll(symbols, started):
                return
            await asyncio.sleep(self._wall_seconds(self._seconds_to_next(started)))

    def _poll(self, symbols: tuple[str, ...], now: dt.datetime) -> bool:
        """One poll at `now`; False when the provider refused for good."""
        try:
            found = {symbol: self._closed_bars(symbol, now) for symbol in symbols}
        except ProviderRefused as exc:
            self._fail(ProviderRefused(f"{self.provider} refused the live bars poll: {exc}"))
            return False
        except ProviderUnavailable as exc:
            self._failed_poll(str(exc))
            return True
        if self._failing or self._connections == 0:
            self._failing = False
            self._emit_connected()
        # Minute by minute, so that a consumer sees each minute's bars together.
        rank = {symbol: i for i, symbol in enumerate(symbols)}
        for symbol, bar in sorted(((s, b) for s, bars in found.items() for b in bars),
                                  key=lambda sb: (sb[1].time, rank[sb[0]])):
            self._emit_bar(symbol, bar)
            self._emitted[symbol] = bar.time
        return True

    def _failed_poll(self, reason: str) -> None:
        if self._failing:
            log.info("the %s live bars poll failed again: %s", self.provider, reason)
            return
        self._failing = True
        self._emit_disconnected(f"polling failed: {reason}")

    def _closed_bars(self, symbol: str, now: dt.datetime) -> list[Bar]:
        """The bars of `symbol` not emitted yet whose minute ended by `now`, in order."""
        window = self._window(symbol, now)
        if window is None:
            return []
        start, end = window
        bars = sorted(self._bars.fetch_minutes(symbol, start, end), key=lambda b: b.time)
        return [bar for bar in _minutes(bars) if start <= bar.time and bar.time + MINUTE <= now]

    def _window(self, symbol: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """[first, last] bar starts to ask for: today's session from the minute after the
        last one emitted; None when no minute of it can have closed yet."""
        minutes = _session_minutes(now.astimezone(NEW_YORK).date())
        if not minutes:
            return None
        last = self._emitted.get(symbol)
        start = minutes[0] if last is None else max(minutes[0], last + MINUTE)
        if start + MINUTE > now:  # not one more minute can have ended
            return None
        return start, min(minutes[-1], now)

    def _seconds_to_next(self, started: dt.datetime) -> float:
        """Clock seconds from now to the next poll: an interval after the last one
        began, or just after the current minute ends if that is sooner."""
        now = self._now()
        settled = now.replace(second=0, microsecond=0) + SETTLE
        if settled <= now:
            settled += MINUTE
        following = min(started + dt.timedelta(seconds=self.interval), settled)
        return max(0.0, (following - now).total_seconds())

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError(f"the clock gave a time without a timezone: {now!r}")
        return now.astimezone(dt.UTC)


@lru_cache(maxsize=8)
def _session_minutes(day: dt.date) -> tuple[dt.datetime, ...]:
    """The regular session's minutes (UTC starts) of a New York day; none if no session."""
    if not calendar.is_session(day):
        return ()
    return tuple(m.astimezone(dt.UTC) for m in calendar.session_minutes(day))


def _minutes(bars: list[Bar]) -> list[Bar]:
    """Bars on a minute boundary, one per minute (the later answer of a repeated one)."""
    by_minute: dict[dt.datetime, Bar] = {}
    for bar in bars:
        time = bar.time.astimezone(dt.UTC)
        if time.second == 0 and time.microsecond == 0:
            by_minute[time] = bar
    return [by_minute[t] for t in sorted(by_minute)]
