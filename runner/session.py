"""The session loop: play one run from its checkpoint to the end, or to a stop.

Each step is played by runner.step (settle, decide, execute, record); this loop only
says which steps, when to stop, and how long to wait out a database that does not
answer. It stops at a step boundary when runner.shutdown's StopSignal is set (SIGTERM
or SIGINT: see there what each means), when the run's LLM budget is spent, or when
its risk guard's daily loss or drawdown limit is crossed (core.risk). The result is
runner.result's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from core.bars import Bar
from core.errors import StoreUnavailable
from core.records import Model, Run
from core.risk import RiskGuard
from core.store import Store
from runner import telemetry
from runner.budget import SpendGuard
from runner.deciders import Decider
from runner.deciding import Deciding
from runner.events import EventPublisher
from runner.marketdata import Timeline
from runner.prices import RunPrices
from runner.research import RunResearch
from runner.result import session_result
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.step import StepPlayer
from runner.trading import TradingService

log = logging.getLogger(__name__)



class Ending(Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"  # never returned by play(): the decider failed (DeciderFailed)


class Session:
    def __init__(self, *, store: Store, publisher: EventPublisher, run: Run, model: Model,
                 decider: Decider, timeline: Timeline, bars: dict[str, list[Bar]],
                 stop: StopSignal, settings: RunnerSettings,
                 guard: SpendGuard | None = None,
                 research: RunResearch | None = None,
                 clock: Callable[[], dt.datetime] | None = None,
                 late: Callable[[int], str | None] | None = None,
                 trading: TradingService | None = None) -> None:
        self.store = store
        self.run = run
        self.model = model
        self.timeline = timeline
        self.bars = bars
        self.stop = stop
        self.settings = settings
        self.guard = guard
        # Why the session ended the run itself (a budget): the stop's reason.
        self.stop_reason: str | None = None
        # Every ledger write carries this runner's attempt: once a newer runner has taken
        # the run over, the next write raises Superseded and this one bows out.
        self.attempt = run.attempts
        self.trading = trading or TradingService(
            store, fee_per_trade=run.spec.fee_per_trade, attempt=self.attempt,
            initial_margin=run.spec.initial_margin,
            maintenance_margin=run.spec.maintenance_margin)
        self.prices = RunPrices(timeline, bars, run.spec.fill)
        # The run's risk guard (its spec's `risk`): every order the decider places, and
        # the equity at each step boundary.
        self.risk = RiskGuard(run.spec.risk) if run.spec.risk is not None else None
        self.deciding = Deciding(store=store, run=run, model=model, decider=decider,
                                 prices=self.prices, stop=stop, settings=settings,
                                 guard=guard, research=research,
                                 late=late)
        self.steps = StepPlayer(store=store, run=run, trading=self.trading,
                                prices=self.prices, deciding=self.deciding,
                                publisher=publisher, attempt=self.attempt,
                                risk=self.risk, clock=clock)

    @property
    def decider(self) -> Decider:
        return self.deciding.decider

    def play(self) -> Ending:
        start = self.run.steps_done
        if start:
            log.info("resuming after checkpoint: step %d of %d", start, len(self.timeline))
        for step in range(start, len(self.timeline)):
            if self.stop.requested or self._over_budget() or self._over_risk(step):
                return Ending.STOPPED
            began = time.perf_counter()
            if not self._play_through_outages(step):
                return Ending.STOPPED
            telemetry.STEP_DURATION.observe(time.perf_counter() - began)
            telemetry.STEPS.labels(self.run.spec.mode.value).inc()
            if self.settings.step_delay_seconds:
                self.stop.wait(self.settings.step_delay_seconds)
        return Ending.COMPLETED

    def play_step(self, step: int, *, maybe_played: bool = True,
                  missed: str | None = None) -> None:
        """Play one step. `maybe_played`: it may have been played before (the first
        step after a checkpoint, one played again after an outage); no other step can,
        as this runner alone writes the run's ledger, so it skips those reads.
        `missed`: record it as missed with this reason, without a decision."""
        self.steps.play(step, maybe_played=maybe_played, missed=missed)

    def _play_through_outages(self, step: int, missed: str | None = None) -> bool:
        """Play a step; while the database does not answer, wait and play it again (its
        decision, trades and checkpoint are keyed by step, so nothing lands twice).
        False when a stop comes while waiting."""
        deadline = time.monotonic() + self.settings.store_outage_seconds
        delay, again = 0.5, False
        while True:
            try:
                self.play_step(step, maybe_played=again or step == self.run.steps_done,
                               missed=missed)
                return True
            except StoreUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("step %d: %s; retrying in %.1fs", step, exc, delay)
                telemetry.STORE_OUTAGE_RETRIES.inc()
                if self.stop.wait(delay):
                    return False
                delay, again = min(delay * 2, 5.0), True

    def _over_budget(self) -> bool:
        """At a step boundary: a limit reached by the steps so far ends the run here."""
        if self.guard is None:
            return False
        with contextlib.suppress(StoreUnavailable):  # the next boundary asks again
            self.guard.refresh()
        exhausted = self.guard.over()
        if exhausted is None:
            return False
        log.warning("stopping: %s", exhausted.reason)
        telemetry.BUDGET_STOPS.labels(exhausted.limit.value).inc()
        self.stop_reason = exhausted.reason
        return True

    def _over_risk(self, step: int) -> bool:
        """At the boundary before `step`: the equity then (the last bar's close) against
        the risk guard's daily loss and drawdown limits; a breach ends the run here. The
        equity is seen at the last bar's time, then at this bar's, which opens a new
        New York day from the last close. A resumed run's guard starts afresh (its day's
        first equity and its peak are the equity it resumes with)."""
        if self.risk is None:
            return False
        try:
            equity = self.steps.equity_before(step)
        except StoreUnavailable:  # the next boundary asks again
            return False
        for at in [self.prices.time(s) for s in (step - 1, step) if s >= 0]:
            breach = self.risk.check_equity(equity, at)
            if breach is not None:
                log.warning("stopping: %s", breach.reason)
                self.stop_reason = breach.reason
                return True
        return False

    def wind_down(self) -> None:
        """After a stop the run meant (not a pod's disruption): what its book does at
        a stop. A replay has nothing to do; a live run cancels and may flatten."""

    def result(self, ending: Ending) -> dict[str, Any]:
        return session_result(self.store, self.run, ending.value, decider=self.decider.name,
                              prices=self.prices, guard=self.guard)

    def close(self) -> None:
        self.deciding.close()
