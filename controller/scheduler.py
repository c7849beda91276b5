"""The scheduler: the leader fires each schedule's due times, once each.

A due time is done when its row is in schedule_fires; the row and the run it makes are
written in one transaction, so a pass repeated by a restarted controller or a new
leader finds it done and makes nothing twice. A due time found later than its
schedule's make-up window (no controller led then) is recorded as missed, not played
late; one whose run cannot be made (its model gone, a spec no longer valid) is
recorded as failed with the reason. Either way the schedule goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from pydantic import ValidationError

from controller import telemetry
from controller.executor import Executor
from core.errors import InvalidSpec, NotFound
from core.eventlog import EventLog
from core.lifecycle import Lifecycle
from core.records import FireOutcome, Run, Schedule
from core.schedule import NEW_YORK, due_between, next_fires, spec_for
from core.store import BatchRun, Store

log = logging.getLogger(__name__)

# Due times handled per schedule and pass: a schedule far behind (a minutely rule after
# a long outage) catches up over a few passes without holding up the others.
DUE_PER_PASS = 200

# (schedule, run or None, reason, message) -> None: Events for operators.
NotifySchedule = Callable[[Schedule, Run | None, str, str], None]


class Scheduler:
    def __init__(self, store: Store, executor: Executor, *,
                 clock: Callable[[], dt.datetime],
                 notify: NotifySchedule | None = None, events: EventLog | None = None
                 ) -> None:
        self.store = store
        self.lifecycle = Lifecycle(store, events, executor)
        self.clock = clock
        self.notify: NotifySchedule = notify or (lambda s, run, reason, message: None)
        self.next_due: dt.datetime | None = None  # the earliest fire after this pass

    def fire_due(self) -> list[Run]:
        """Fire every active schedule's due times up to now; the runs made, queued with
        their workloads submitted (suspended, as the API's are)."""
        now, made, upcoming = self.clock(), [], []
        for schedule in self.store.list_schedules(None, limit=100_000, active_only=True):
            try:
                made.extend(self._fire_schedule(schedule, now))
                upcoming.extend(next_fires(schedule.cron, max(now, schedule.fired_through), 1))
            except Exception as exc:  # one schedule's trouble is its own; next pass retries
                log.warning("schedule %d: firing failed (%s); retrying next pass",
                            schedule.id, exc)
        self.next_due = min(upcoming, default=None)
        return made

    def seconds_until_next(self) -> float | None:
        if self.next_due is None:
            return None
        return max(0.0, (self.next_due - self.clock()).total_seconds())

    def _fire_schedule(self, schedule: Schedule, now: dt.datetime) -> list[Run]:
        made, missed = [], []
        for due in due_between(schedule.cron, schedule.fired_through, now, DUE_PER_PASS):
            late = (now - due).total_seconds()
            if late > schedule.make_up_seconds:
                reason = (f"missed by {_duration(late)} (no controller was leading); past the "
                          f"make-up window of {_duration(schedule.make_up_seconds)}")
                if self._record(schedule, due, FireOutcome.MISSED, reason):
                    missed.append(due)
            elif run := self._fire(schedule, due):
                made.append(run)
        if missed:  # one Event for an outage's worth of them, each one recorded
            span = _local(missed[0]) + (f" to {_local(missed[-1])}" if len(missed) > 1 else "")
            self.notify(schedule, None, "ScheduleMissed",
                        f"schedule {schedule.id}{_name(schedule)} missed {len(missed)} "
                        f"fire(s), {span}: due while no controller was leading, past its "
                        f"make-up window of {_duration(schedule.make_up_seconds)}")
        return made

    def _fire(self, schedule: Schedule, due: dt.datetime) -> Run | None:
        """The due time's run, queued and submitted; None when it was made already or
        could not be made (recorded as failed)."""
        try:
            spec = spec_for(schedule.template, due)
            fired = self.store.fire_schedule(
                schedule.id, due, FireOutcome.FIRED,
                run=BatchRun(schedule.model_id, spec, spec.step_count()))
        except (InvalidSpec, ValidationError, NotFound) as exc:  # NotFound: its model gone
            reason = f"no run: {exc}"
            if self._record(schedule, due, FireOutcome.FAILED, reason):
                self.notify(schedule, None, "ScheduleFailed",
                            f"schedule {schedule.id}{_name(schedule)} made no run for "
                            f"{_local(due)}: {reason}")
            return None
        if fired is None or fired[1] is None:
            return None  # another replica, or an earlier pass, made it
        run = fired[1]
        telemetry.SCHEDULE_FIRES.labels(FireOutcome.FIRED.value).inc()
        self.lifecycle.enqueued([run])
        log.info("schedule %d fired for %s: run %d", schedule.id, _local(due), run.id)
        self.notify(schedule, run, "ScheduleFired",
                    f"schedule {schedule.id}{_name(schedule)} fired for {_local(due)}: "
                    f"run {run.id}")
        return run

    def _record(self, schedule: Schedule, due: dt.datetime, outcome: FireOutcome,
                reason: str) -> bool:
        """A due time that made no run; False when it was recorded already."""
        if self.store.fire_schedule(schedule.id, due, outcome, reason=reason) is None:
            return False
        telemetry.SCHEDULE_FIRES.labels(outcome.value).inc()
        log.warning("schedule %d %s its fire of %s: %s", schedule.id, outcome.value,
                    _local(due), reason)
        return True


def _local(when: dt.datetime) -> str:
    return when.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")


def _name(schedule: Schedule) -> str:
    return f" ({schedule.name})" if schedule.name else ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
