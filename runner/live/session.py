"""A live run's loop: each minute of today's session is played as soon as it closes.

The bars come from the run's provider stream (runner.live.feeds), through a MinuteBook
(core.marketdata.live.minutes) that releases each minute once, in order, never before
its end by the run's clock (runner.live.clock), with the symbols whose bar never came
as gaps. Each released minute is one step of the ordinary step player (runner.step):

- its bars extend the run's series; a gap repeats the symbol's last close with no volume
  (as `align` does for a replay) and is counted and announced;
- a minute closed longer ago than the decision deadline (a pod that was away, a runner
  that started late) is recorded as missed with the reason, no decision asked; a
  decision that comes back past it is recorded as missed and nothing it asked is traded
  (runner.deciding);
- minutes before a symbol's first price wait for it, then are recorded as missed.

Every bar the book accepted is saved in the bar cache as it arrives; a session seen
from its first minute marks its day cached at the end, so a replay of the run reads
exactly these bars. A runner that replaces a lost pod restores the bars of the steps
played from the cache and goes on from its checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from core.bars import Bar
from core.errors import StoreUnavailable
from core.eventlog import EventType
from core.eventlog.payloads import log_data
from core.marketdata.live.base import Connected, Disconnected, LiveBar, LiveBarFeed, LiveEvent
from core.marketdata.live.minutes import (
    MINUTE,
    ClosedMinute,
    MinuteBook,
    Placement,
    queued_events,
)
from core.orders import FLATTEN_ON_STOP_SEQ
from core.records import OrderOrigin, Trade
from core.store.prices import PriceBar
from runner import telemetry
from runner.brokers.alpaca_paper import AlpacaPaperBook, parse_client_order_id
from runner.live.clock import LiveClock
from runner.live.paper import PaperTrading
from runner.session import Ending, Session
from runner.step import journal_event

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # of the run's clock: how often the loop looks at the stop signal


class LiveSession(Session):
    def __init__(self, *, feed: LiveBarFeed, clock: LiveClock,
                 broker: AlpacaPaperBook | None = None, **kwargs: Any) -> None:
        super().__init__(clock=clock, late=self._late, **kwargs)
        self.broker = broker  # the paper account's book (runner.live.paper), if any
        # The step a replacement runner may play again with orders the lost one had not
        # sent yet: past the deadline, they are not sent late.
        self._resumed_at = self.run.steps_done if self.run.attempts > 1 else None
        if isinstance(self.trading, PaperTrading):
            self.trading.late = self._late_replay
        live = self.run.spec.live
        assert live is not None, "a live session plays a live run"
        self.feed = feed
        self.live_clock = clock
        self.deadline = live.decision_deadline_seconds
        self.source = self.run.spec.data.value if self.run.spec.data else "live"
        self._index = {t: i for i, t in enumerate(self.timeline.times)}
        self._unpriced: list[int] = []  # steps waiting for every symbol's first price
        self._unsaved: list[PriceBar] = []  # bars the store did not take yet
        self._received: dict[str, list[PriceBar]] = {s: [] for s in self.run.spec.symbols}
        self._whole_session = False  # saw the session from its first minute
        self.gaps = 0
        self.missed = 0
        self.lags: list[float] = []
        self.reconnects = 0
        self.left_open: dict[str, Any] | None = None  # after a stop: what stayed open

    # -- the loop ----------------------------------------------------------------------

    def play(self) -> Ending:
        start = self.run.steps_done
        book = MinuteBook(self.timeline.times[start:], self.run.spec.symbols,
                          clock=self.live_clock, grace=self.feed.grace)
        self._restore(start, book)
        self._whole_session = start == 0 and self.live_clock() < self.timeline.times[0] + \
            dt.timedelta(seconds=self.deadline)
        log.info("live: %d minutes from %s, clock %s, deadline %.0fs", len(book.minutes),
                 self.timeline.times[start].isoformat(), self.live_clock, self.deadline)
        if self.broker is not None:
            self.broker.start()
            self._reconcile(start)
        self.feed.start(self.run.spec.symbols)
        try:
            ending = self._follow(book)
        finally:
            self.feed.close()
            self._save_bars()
        if ending is Ending.COMPLETED:
            self._mark_cached()
        return ending

    def _follow(self, book: MinuteBook) -> Ending:
        poll = POLL_SECONDS * self.live_clock.speed
        while True:
            for queued in queued_events(self.feed):  # before the book decides
                self._on_event(queued, book)
            for closed in book.closed():
                if not self._play_minute(closed):
                    return Ending.STOPPED
            if book.done:
                return Ending.COMPLETED
            if self.stop.requested:
                return Ending.STOPPED
            wait = self.live_clock.wall_seconds(book.wait_seconds(poll))
            self._on_event(self.feed.get(timeout=wait), book)

    def _on_event(self, event: LiveEvent | None, book: MinuteBook) -> None:
        if isinstance(event, LiveBar):
            placement = book.add(event)
            if placement in (Placement.ACCEPTED, Placement.REPLACED):
                self._keep(event)
            elif placement is Placement.LATE:
                log.info("late bar of %s for %s: its minute was decided without it",
                         event.symbol, event.bar.time.isoformat())
        elif isinstance(event, Connected):
            if event.reconnected:
                self.reconnects += 1
            self._announce("info", f"{event.provider} stream connected"
                           + (" again: minutes in between may be gaps"
                              if event.reconnected else ""), phase="stream_connected")
        elif isinstance(event, Disconnected):
            self._announce("warning", f"{event.provider} stream dropped ({event.reason}); "
                           "reconnecting", phase="stream_dropped")

    def _play_minute(self, closed: ClosedMinute) -> bool:
        """Play the step of a closed minute (and those that waited for a first price);
        False when the run stops before it."""
        step = self._index[closed.minute]
        self._extend(step, closed)
        if not self._priced(step):
            self._unpriced.append(step)
            return True
        if self._unpriced:
            self._announce("info", f"first prices at {closed.minute.isoformat()}: the "
                           f"{len(self._unpriced)} minute(s) before are recorded missed",
                           phase="first_prices")
        for waiting in self._unpriced:
            if not self._play(waiting, "missed: no price yet for every symbol (their "
                                       "first bars came later)"):
                return False
        self._unpriced.clear()
        return self._play(step, self._missed(step))

    def _play(self, step: int, missed: str | None) -> bool:
        if self.stop.requested or self._over_budget() or self._over_risk(step):
            return False
        lag = self._lag(step)
        began = time.perf_counter()
        if not self._play_through_outages(step, missed):
            return False
        telemetry.STEP_DURATION.observe(time.perf_counter() - began)
        telemetry.STEPS.labels("live").inc()
        telemetry.LIVE_DECISION_LAG.observe(max(0.0, lag))
        if missed is not None:
            self.missed += 1
            telemetry.LIVE_MISSED_STEPS.inc()
        self.lags.append(lag)
        return True

    # -- the broker ---------------------------------------------------------------------

    def _reconcile(self, start: int) -> None:
        """Before deciding again (a pod that replaced a lost one): the broker's open
        orders of this run and its positions, against the ledger. An order of a step
        already played is cancelled (its trade was booked, or it was lost with its
        pod); one of the step about to be played again is left: that step sends it
        again by its client id and books its fill once."""
        assert self.broker is not None
        seen = self.broker.reconcile(self.run.id)
        for order in seen.open_orders:
            parsed = parse_client_order_id(order.client_order_id, self.broker.prefix)
            if parsed is not None and parsed[1] < start:
                self.broker.cancel(order.client_order_id)
                self._announce("warning", f"reconcile: cancelled order "
                               f"{order.client_order_id} left open by an earlier attempt",
                               phase="reconcile")
        ledger = self.store.get_portfolio(self.run.id).holdings
        account = {s: p.quantity for s, p in seen.positions.items()
                   if s in self.run.spec.symbols}
        same = {s: q for s, q in ledger.items() if q} == {s: q for s, q in account.items() if q}
        self._announce("info" if same else "warning",
                       f"reconcile: the ledger holds {_holding(ledger)}, the account "
                       f"{_holding(account)}" + ("" if same else " (the account is shared, or "
                                                 "filled while no runner was there)"),
                       phase="reconcile")

    def wind_down(self) -> None:
        """A stop the run meant: its open broker orders cancelled, its positions closed
        if it says so (flatten_on_stop), and what stayed open kept for the result."""
        live = self.run.spec.live
        assert live is not None
        cancelled = self.broker.cancel_all_for(self.run.id) if self.broker else {}
        played = self.store.get_run(self.run.id).steps_done
        if live.flatten_on_stop and played:
            step = played - 1
            self.trading.close_all(self.run.id, step, FLATTEN_ON_STOP_SEQ,
                                   self.prices.closes(step), bar_time=self.prices.time(step),
                                   reasoning="flat at the stop (flatten_on_stop)",
                                   symbols=self.run.spec.symbols,
                                   origin=OrderOrigin.FLAT_AT_CLOSE)
            for item in self.steps._take_journal():
                self.steps.publisher.publish(*journal_event(item))
        held = {s: str(q) for s, q in self.store.get_portfolio(self.run.id).holdings.items()
                if q}
        still = self.broker.open_orders(self.run.id) if self.broker else []
        self.left_open = {"positions": held, "broker_orders_cancelled": len(cancelled),
                          "broker_orders_open": [o.client_order_id for o in still]}

    def close(self) -> None:
        super().close()
        if self.broker is not None:
            self.broker.close()

    # -- bars ---------------------------------------------------------------------------

    def _extend(self, step: int, closed: ClosedMinute) -> None:
        """Each symbol's series up to `step`: its bar, or its last close again (a gap)."""
        gaps = []
        for symbol in self.run.spec.symbols:
            series = self.bars[symbol]
            bar = closed.bar(symbol)
            if bar is not None:
                _backfill(series, step, bar)
                series.append(bar)
            elif series:  # before a symbol's first bar a minute is no gap: it is missed
                gaps.append(symbol)
                series.append(Bar.flat(closed.minute, series[-1].close))
        if gaps:
            self.gaps += len(gaps)
            telemetry.LIVE_GAPS.inc(len(gaps))
            self._announce("info", f"gap: no bar of {', '.join(gaps)} for "
                           f"{closed.minute.isoformat()} (its last close stands)",
                           phase="gap", symbols=gaps, minute=closed.minute.isoformat())

    def _priced(self, step: int) -> bool:
        return all(len(series) == step + 1 for series in self.bars.values())

    def _restore(self, start: int, book: MinuteBook) -> None:
        """The bars of the steps an earlier attempt played, from the bar cache (by the
        same rules: a gap repeats the last close, minutes before a symbol's first bar
        take its open); the bars it had of the minutes still to play go to the book."""
        if start == 0:
            return
        times = self.timeline.times
        for symbol in self.run.spec.symbols:
            found = {b.bar_time: Bar(b.bar_time, b.open, b.high, b.low, b.close, b.volume)
                     for b in self.store.load_prices(symbol, "1m", times[0], times[-1],
                                                     source=self.source)}
            if not found:
                raise RuntimeError(f"the bar cache has no bar of {symbol} for the "
                                   f"{start} minutes played")
            first = min(found.values(), key=lambda bar: bar.time)
            series = self.bars[symbol]
            for step, at in enumerate(times[:start]):
                bar = found.get(at)
                if bar is None and not series and at < first.time:
                    continue  # before the first price: backfilled below
                if bar is None:
                    bar = Bar.flat(at, (series[-1] if series else first).close)
                _backfill(series, step, bar)
                series.append(bar)
            _backfill(series, start, first)
            for at in times[start:]:
                if at in found:
                    book.add(LiveBar(symbol, found[at]))
        log.info("live: restored %d played minutes from the bar cache", start)

    def _keep(self, live: LiveBar) -> None:
        row = PriceBar(live.symbol, "1m", live.bar.time, live.bar.open, live.bar.high,
                       live.bar.low, live.bar.close, live.bar.volume, source=self.source)
        self._received[row.symbol].append(row)
        self._unsaved.append(row)
        self._save_bars()

    def _save_bars(self) -> None:
        if not self._unsaved:
            return
        try:
            self.store.save_prices(self._unsaved)
            self._unsaved = []
        except StoreUnavailable:
            log.warning("the bar cache is away; %d bars wait", len(self._unsaved))

    def _mark_cached(self) -> None:
        """A session seen whole: its day is cached, so a replay reads these bars."""
        if not self._whole_session:
            return
        day = self.run.spec.first_day
        for symbol, rows in self._received.items():
            if rows:
                self.store.cache_days(self.source, symbol, "1m", {day: rows})

    # -- the clock ----------------------------------------------------------------------

    def _lag(self, step: int) -> float:
        """Seconds from the close of the step's bar to now, by the run's clock."""
        ended = self.timeline.times[step] + MINUTE
        return (self.live_clock() - ended).total_seconds()

    def _missed(self, step: int) -> str | None:
        lag = self._lag(step)
        if lag <= self.deadline:
            return None
        return (f"missed: the bar closed {lag:.0f}s before the runner could decide, past "
                f"the decision deadline ({self.deadline:.0f}s)")

    def _late(self, step: int) -> str | None:
        """After a decision: past the deadline, nothing it asked for is traded."""
        lag = self._lag(step)
        if lag <= self.deadline:
            return None
        return (f"missed: decided {lag:.1f}s after the bar closed, past the decision "
                f"deadline ({self.deadline:.0f}s); nothing was traded late")

    def _late_replay(self, step: int) -> str | None:
        return self._late(step) if step == self._resumed_at else None

    def _announce(self, level: str, message: str, **details: Any) -> None:
        log.log(logging.WARNING if level == "warning" else logging.INFO, message)
        self.steps.publisher.publish(EventType.LOG, log_data(level, message, **details))

    # -- the result ---------------------------------------------------------------------

    def result(self, ending: Ending) -> dict[str, Any]:
        result = super().result(ending)
        live = self.run.spec.live
        assert live is not None
        result["live"] = live_summary(live.broker.value, self.gaps, self.missed, self.lags,
                                      self.reconnects)
        if self.left_open is not None:
            result["live"]["left_open"] = self.left_open
        slippage = broker_slippage(self.store.list_trades(self.run.id, limit=100_000))
        if slippage is not None:
            result["live"]["slippage"] = slippage
        return result


def live_summary(broker: str, gaps: int, missed: int, lags: Sequence[float],
                 reconnects: int) -> dict[str, Any]:
    """What a live run's result says of its clock: gaps, missed steps, decision lag."""
    played = sorted(lags)
    return {"broker": broker, "gaps": gaps, "missed_steps": missed,
            "reconnects": reconnects,
            "lag_p50_seconds": round(statistics.median(played), 3) if played else None,
            "lag_max_seconds": round(played[-1], 3) if played else None}


def broker_slippage(trades: Sequence[Trade]) -> dict[str, Any] | None:
    """The broker's fills against tickrun's rule price: what they cost more (positive)
    or less in US dollars, and in basis points of the notional. None: no broker fill."""
    fills = [t for t in trades if t.filled and t.rule_price is not None]
    if not fills:
        return None
    cost = sum(((t.price - t.rule_price) * t.quantity * (1 if t.side.buys else -1)
                for t in fills if t.rule_price is not None), Decimal(0))
    notional = sum((t.rule_price * t.quantity for t in fills if t.rule_price is not None),
                   Decimal(0))
    bps = (cost / notional * 10_000) if notional else Decimal(0)
    return {"fills": len(fills), "cost": str(cost.quantize(Decimal("0.0001"))),
            "bps": str(bps.quantize(Decimal("0.01")))}


def _holding(holdings: dict[str, Decimal]) -> str:
    held = [f"{q} {s}" for s, q in sorted(holdings.items()) if q]
    return ", ".join(held) or "nothing"


def _backfill(series: list[Bar], step: int, first: Bar) -> None:
    """Minutes before a symbol's first price: its first bar's open, no volume (only
    steps recorded as missed ever read them)."""
    while len(series) < step:
        at = first.time - MINUTE * (step - len(series))
        series.append(Bar.flat(at, first.open))
