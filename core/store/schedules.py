"""Schedules: run templates fired by a cron rule; each due time fires once at most.

A fire records its outcome and queues its run (core.store.runs.insert_run) in one
transaction, under the schedule's row lock, so two replicas cannot fire one due time.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import Any

from core.errors import NotFound
from core.records import FireOutcome, Run, Schedule, ScheduleFire
from core.store import codec
from core.store.batches import BatchRun
from core.store.models import require_model
from core.store.runs import insert_run
from core.store.sqlbase import SqlAccess, insert_row, utcnow


class ScheduleStore(ABC):
    @abstractmethod
    def create_schedule(self, user_id: str, model_id: int, name: str | None, cron: str,
                        template: dict[str, Any], make_up_seconds: int) -> Schedule:
        """An active schedule whose first due time is after now (NotFound: no such
        model of the user's)."""

    @abstractmethod
    def get_schedule(self, schedule_id: int, user_id: str | None = None) -> Schedule:
        """NotFound when missing or when it belongs to another user."""

    @abstractmethod
    def list_schedules(self, user_id: str | None, *, before_id: int | None = None,
                       limit: int = 50, active_only: bool = False) -> list[Schedule]:
        """The user's schedules (None: everyone's, for the controller), newest first."""

    @abstractmethod
    def pause_schedule(self, schedule_id: int, user_id: str, paused: bool) -> Schedule:
        """Pause, or resume: a resumed schedule fires from now on; the due times it
        passed while paused are not made up."""

    @abstractmethod
    def delete_schedule(self, schedule_id: int, user_id: str) -> None:
        """The schedule and its fire records; its runs stay, without it."""

    @abstractmethod
    def fire_schedule(self, schedule_id: int, due_at: dt.datetime, outcome: FireOutcome, *,
                      run: BatchRun | None = None, reason: str | None = None
                      ) -> tuple[ScheduleFire, Run | None] | None:
        """Record what came of one due time, with its run (queued, in the same
        transaction) when `run` is given, and move the schedule past it. None when the
        due time was recorded already (another replica or an earlier pass got there
        first), or the schedule is paused or gone: a due time fires once at most."""

    @abstractmethod
    def list_fires(self, schedule_id: int, *, limit: int = 20) -> list[ScheduleFire]:
        """The schedule's recorded due times, newest first."""


class SchedulesSql(SqlAccess, ScheduleStore):
    def create_schedule(self, user_id: str, model_id: int, name: str | None, cron: str,
                        template: dict[str, Any], make_up_seconds: int) -> Schedule:
        now = utcnow()
        values = {"user_id": user_id, "model_id": model_id, "name": name, "cron": cron,
                  "template": template, "make_up_seconds": make_up_seconds, "paused": False,
                  "created_at": now, "fired_through": now}
        with self._tx(write=True) as cur:
            require_model(cur, model_id, user_id)
            row = insert_row(cur, self.dialect, "schedules", values, "RETURNING *")
        assert row is not None
        return codec.record_from(Schedule, row)

    def get_schedule(self, schedule_id: int, user_id: str | None = None) -> Schedule:
        return codec.record_from(Schedule, self._owned_row("schedules", "schedule",
                                                           schedule_id, user_id))

    def list_schedules(self, user_id: str | None, *, before_id: int | None = None,
                       limit: int = 50, active_only: bool = False) -> list[Schedule]:
        where, params = ["id < %s"], [before_id or 2**63 - 1]  # type: list[str], list[Any]
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        if active_only:
            where.append("NOT paused")
        with self._tx() as cur:
            rows = cur.all(f"SELECT * FROM schedules WHERE {' AND '.join(where)}"
                           " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [codec.record_from(Schedule, r) for r in rows]

    def pause_schedule(self, schedule_id: int, user_id: str, paused: bool) -> Schedule:
        d = self.dialect
        with self._tx(write=True) as cur:
            row = cur.one(f"SELECT * FROM schedules WHERE id = %s{d.for_update}",
                          (schedule_id,))
            if row is None or row["user_id"] != user_id:
                raise NotFound(f"schedule {schedule_id} not found")
            if bool(row["paused"]) == paused:
                return codec.record_from(Schedule, row)
            # Resumed: what fell due while paused is passed over, not made up.
            through = row["fired_through"] if paused else d.time(utcnow())
            updated = cur.one("UPDATE schedules SET paused = %s, fired_through = %s"
                              " WHERE id = %s RETURNING *",
                              (paused, through, schedule_id))
        assert updated is not None
        return codec.record_from(Schedule, updated)

    def delete_schedule(self, schedule_id: int, user_id: str) -> None:
        with self._tx(write=True) as cur:
            cur.run("UPDATE runs SET schedule_id = NULL WHERE schedule_id = %s AND"
                    " user_id = %s", (schedule_id, user_id))
            cur.run("DELETE FROM schedule_fires WHERE schedule_id IN"
                    " (SELECT id FROM schedules WHERE id = %s AND user_id = %s)",
                    (schedule_id, user_id))
            count = cur.run("DELETE FROM schedules WHERE id = %s AND user_id = %s",
                            (schedule_id, user_id))
        if count == 0:
            raise NotFound(f"schedule {schedule_id} not found")

    def fire_schedule(self, schedule_id: int, due_at: dt.datetime, outcome: FireOutcome, *,
                      run: BatchRun | None = None, reason: str | None = None
                      ) -> tuple[ScheduleFire, Run | None] | None:
        d, now = self.dialect, utcnow()
        with self._tx(write=True) as cur:
            # The row lock orders two replicas firing the same schedule; the fire's
            # primary key is what refuses the second.
            row = cur.one(f"SELECT * FROM schedules WHERE id = %s{d.for_update}",
                          (schedule_id,))
            if row is None or bool(row["paused"]):
                return None
            values = {"schedule_id": schedule_id, "due_at": due_at, "outcome": outcome,
                      "reason": reason, "recorded_at": now}
            fire = insert_row(cur, d, "schedule_fires", values,
                          "ON CONFLICT (schedule_id, due_at) DO NOTHING RETURNING *")
            if fire is None:
                return None
            made = None
            if run is not None:
                made = insert_run(cur, d, row["user_id"], run.model_id, run.spec,
                                  run.steps_total, now, schedule_id=schedule_id)
                assert made is not None
                fire = cur.one("UPDATE schedule_fires SET run_id = %s WHERE schedule_id = %s"
                               " AND due_at = %s RETURNING *",
                               (made["id"], schedule_id, d.time(due_at)))
                assert fire is not None
            if codec.ts(row["fired_through"]) < due_at:
                cur.run("UPDATE schedules SET fired_through = %s WHERE id = %s",
                        (d.time(due_at), schedule_id))
        return (codec.record_from(ScheduleFire, fire),
                None if made is None else codec.record_from(Run, made))

    def list_fires(self, schedule_id: int, *, limit: int = 20) -> list[ScheduleFire]:
        with self._tx() as cur:
            rows = cur.all("SELECT * FROM schedule_fires WHERE schedule_id = %s"
                           " ORDER BY due_at DESC LIMIT %s", (schedule_id, limit))
        return [codec.record_from(ScheduleFire, r) for r in rows]
