"""The scheduler on both stores with an injected clock: every due time fires once, even
with two replicas firing at the same moment or a restart between passes; a due time
found past its make-up window is recorded as missed, one whose run cannot be made as
failed; a paused schedule fires nothing and does not make up its pause."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controller.scheduler import Scheduler
from core.records import FireOutcome, Run, Schedule
from core.schedule import NEW_YORK
from core.store import RunFilter, Store, open_store
from tests.factories import make_model
from tests.unit.controller.test_reconciler import ScriptedExecutor

D = dt.date
INTRADAY = {"mode": "intraday", "symbols": ["AAPL"], "data": "synthetic", "session": "today",
            "decider": "sma_crossover", "decider_params": {"fast": 3, "slow": 10}}
WEEKLY = {"mode": "daily", "symbols": ["MSFT"], "data": "synthetic", "sessions": 5,
          "session": "last_closed", "decider": "sma_crossover"}


def ny(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url, pool_size=10)
    yield s
    s.close()


def schedule(store: Store, cron: str, template: dict[str, Any], since: dt.datetime,
             make_up: int = 3600) -> Schedule:
    """A schedule whose due times start after `since`: created now (2026 or later), so
    the sessions of the test's past week are reached by moving its cursor back."""
    model = make_model(store, "sched-user", f"m-{cron}")
    made = store.create_schedule("sched-user", model.id, "test", cron, template, make_up)
    with store._tx(write=True) as cur:  # type: ignore[attr-defined]
        cur.run("UPDATE schedules SET fired_through = %s WHERE id = %s",
                (store.dialect.time(since), made.id))  # type: ignore[attr-defined]
    return store.get_schedule(made.id)


def runs_of(store: Store, schedule_id: int) -> list[Run]:
    return sorted(store.list_runs("sched-user", RunFilter(schedule_id=schedule_id,
                                                          limit=1000)), key=lambda r: r.id)


def walk(scheduler: Scheduler, clock: Clock, until: dt.datetime,
         step: dt.timedelta = dt.timedelta(minutes=20)) -> None:
    while clock.now < until:
        clock.now = min(until, clock.now + step)
        scheduler.fire_due()


def test_thanksgiving_week_fires_each_session_once(store: Store) -> None:
    start = ny(D(2025, 11, 25), 10)
    clock, executor = Clock(start), ScriptedExecutor(gone_means_stopped=False)
    notes: list[tuple[str, str]] = []
    scheduler = Scheduler(store, executor, clock=clock,
                          notify=lambda s, run, reason, msg: notes.append((reason, msg)))
    opening = schedule(store, "25 9 * * *", INTRADAY, start)  # every day, sessions only
    weekly = schedule(store, "30 16 * * 5", WEEKLY, start)  # Fridays after the close
    walk(scheduler, clock, ny(D(2025, 12, 2), 12))
    walk(scheduler, clock, ny(D(2025, 12, 2), 12))  # passes repeated at the same time

    sessions = [(r.spec.date, r.steps_total) for r in runs_of(store, opening.id)]
    assert sessions == [(D(2025, 11, 26), 390), (D(2025, 11, 28), 210),
                        (D(2025, 12, 1), 390), (D(2025, 12, 2), 390)]
    [week] = runs_of(store, weekly.id)  # Friday 11-28, a half day closed at 13:00
    assert (week.spec.start, week.spec.end, week.steps_total) == (
        D(2025, 11, 21), D(2025, 11, 28), 5)
    fires = store.list_fires(opening.id)
    assert [f.outcome for f in fires] == [FireOutcome.FIRED] * 4
    assert {f.run_id for f in fires} == {r.id for r in runs_of(store, opening.id)}
    assert sorted(run_id for call, run_id in executor.calls if call == "submit") == sorted(
        r.id for r in [*runs_of(store, opening.id), week])
    assert [reason for reason, _ in notes] == ["ScheduleFired"] * 5
    assert "fired for 2025-11-28 09:25 EST" in notes[1][1]


def test_two_replicas_firing_together_make_each_run_once(store: Store) -> None:
    start = ny(D(2025, 12, 1), 9)
    every_minute = schedule(store, "* * * * *", {**WEEKLY, "sessions": 1}, start)
    clock = Clock(ny(D(2025, 12, 1), 9, 30))  # 30 due times at once
    replicas = [Scheduler(store, ScriptedExecutor(False), clock=clock) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))
    made: list[Run] = []

    def fire(replica: Scheduler) -> None:
        barrier.wait()
        made.extend(replica.fire_due())

    threads = [threading.Thread(target=fire, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    runs = runs_of(store, every_minute.id)
    assert len(runs) == len(made) == 30
    assert len({r.id for r in made}) == 30
    assert len(store.list_fires(every_minute.id, limit=100)) == 30


def test_a_restart_fires_what_is_due_once_and_records_what_is_past_its_window(
        store: Store) -> None:
    start = ny(D(2025, 12, 1), 9)
    hourly = schedule(store, "0 * * * *", {**WEEKLY, "sessions": 1}, start, make_up=1800)
    clock = Clock(ny(D(2025, 12, 1), 10, 5))
    first = Scheduler(store, ScriptedExecutor(False), clock=clock)
    assert [r.spec.end for r in first.fire_due()] == [D(2025, 11, 28)]  # the 10:00 fire
    # The controller is down from 10:05 to 13:20: 11:00 and 12:00 are past the 30-minute
    # window, 13:00 is 20 minutes late and still made.
    notes: list[str] = []
    clock.now = ny(D(2025, 12, 1), 13, 20)
    second = Scheduler(store, ScriptedExecutor(False), clock=clock,
                       notify=lambda s, run, reason, msg: notes.append(f"{reason}: {msg}"))
    made = second.fire_due()
    assert len(made) == 1 and second.fire_due() == [] and first.fire_due() == []
    fires = {f.due_at.astimezone(NEW_YORK).hour: f for f in store.list_fires(hourly.id)}
    assert {h: f.outcome for h, f in fires.items()} == {
        10: FireOutcome.FIRED, 11: FireOutcome.MISSED, 12: FireOutcome.MISSED,
        13: FireOutcome.FIRED}
    assert fires[13].run_id == made[0].id and fires[11].run_id is None
    assert fires[11].reason == ("missed by 2h20m (no controller was leading); past the "
                                "make-up window of 30m")
    assert len(runs_of(store, hourly.id)) == 2
    [missed] = [n for n in notes if n.startswith("ScheduleMissed")]
    assert "missed 2 fire(s), 2025-12-01 11:00 EST to 2025-12-01 12:00 EST" in missed


def test_a_paused_schedule_fires_nothing_and_does_not_make_up_its_pause(store: Store) -> None:
    start = ny(D(2025, 12, 1), 9)
    hourly = schedule(store, "0 * * * *", {**WEEKLY, "sessions": 1}, start, make_up=86400)
    store.pause_schedule(hourly.id, "sched-user", True)
    clock = Clock(ny(D(2025, 12, 1), 12, 30))
    scheduler = Scheduler(store, ScriptedExecutor(False), clock=clock)
    assert scheduler.fire_due() == [] and store.list_fires(hourly.id) == []
    # Resumed now (the real now, in 2026): the 2025 due times passed while paused are
    # behind its cursor, however wide its make-up window.
    resumed = store.pause_schedule(hourly.id, "sched-user", False)
    assert not resumed.paused and resumed.fired_through > clock.now
    assert scheduler.fire_due() == [] and runs_of(store, hourly.id) == []


def test_a_fire_whose_run_cannot_be_made_is_recorded_and_the_schedule_goes_on(
        store: Store) -> None:
    start = ny(D(2025, 12, 1), 9)
    broken = schedule(store, "0 10,11 * * *", {**WEEKLY, "sessions": 1}, start)
    with store._tx(write=True) as cur:  # type: ignore[attr-defined]
        # A template that stopped being a run (as if its options changed meaning).
        cur.run("UPDATE schedules SET template = %s WHERE id = %s", (
            store.dialect.json({**WEEKLY, "initial_cash": "-5"}),  # type: ignore[attr-defined]
            broken.id))
    clock = Clock(ny(D(2025, 12, 1), 10, 1))
    scheduler = Scheduler(store, ScriptedExecutor(False), clock=clock)
    assert scheduler.fire_due() == []
    [fire] = store.list_fires(broken.id)
    assert fire.outcome is FireOutcome.FAILED and fire.reason and "initial_cash" in fire.reason
    assert scheduler.seconds_until_next() == pytest.approx(59 * 60, abs=1)  # 11:00 next


def test_next_due_wakes_the_loop_in_time(store: Store) -> None:
    clock = Clock(ny(D(2025, 12, 1), 9, 24))
    schedule(store, "25 9 * * *", INTRADAY, ny(D(2025, 12, 1), 9))
    scheduler = Scheduler(store, ScriptedExecutor(False), clock=clock)
    assert scheduler.fire_due() == []
    assert scheduler.seconds_until_next() == pytest.approx(60, abs=0.01)
