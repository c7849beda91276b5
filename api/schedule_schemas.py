"""Bodies of /v1/schedules: a run template with a cron rule in New York time on XNYS
sessions, and what it fired."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.batch_schemas import OPTIONS, ModelId, RunOptions
from api.schemas import StorableBody
from core.calendar import EXCHANGE, NEW_YORK
from core.errors import InvalidSpec
from core.records import FireOutcome, Schedule, ScheduleFire
from core.schedule import SessionRule, check_cron
from core.spec import DeciderKind, Mode, Symbol

MAX_MAKE_UP_SECONDS = 7 * 86_400
MAX_SESSIONS = 2520  # ten years of sessions

SCHEDULE_EXAMPLE: dict[str, Any] = {
    "name": "after the close", "model_id": 1, "cron": "30 16 * * 1-5", "mode": "intraday",
    "symbols": ["AAPL"], "session": "last_closed", "decider": "sma_crossover",
    "data": "synthetic"}


class ScheduleCreate(StorableBody, RunOptions):
    """A run made at every fire of `cron` (minute hour day month weekday, read in
    America/New_York) that falls on an XNYS session; a closed day never fires."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [SCHEDULE_EXAMPLE]})

    name: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")
    model_id: ModelId
    cron: str = Field(max_length=200, description="Five fields (minute hour day month "
                      "weekday) read in America/New_York, or an alias such as `@daily`: e.g. "
                      "`25 9 * * 1-5`, `30 16 * * 5`")
    mode: Mode
    symbols: list[Symbol] = Field(min_length=1, max_length=10, description="Distinct tickers",
                                  json_schema_extra={"uniqueItems": True})
    session: SessionRule = Field(
        default=SessionRule.LAST_CLOSED,
        description="The session a fire plays: `today` (the fire's date, on a half day "
                    "too) or `last_closed` (the latest session closed by the fire time)")
    sessions: int | None = Field(
        default=None, ge=1, le=MAX_SESSIONS,
        description="Daily: how many sessions the backtest spans, ending at the session "
                    "the fire plays (default 5)")
    # At least a minute, the cron's resolution: a pass that starts a moment after the
    # due time must still make its run.
    make_up_seconds: int = Field(
        default=3600, ge=60, le=MAX_MAKE_UP_SECONDS,
        description="A fire missed while no controller led is made up this late at most; "
                    "later, it is recorded as missed")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            check_cron(value)
        except InvalidSpec as exc:
            raise ValueError(str(exc)) from exc
        return " ".join(value.split())

    @model_validator(mode="after")
    def _shape(self) -> ScheduleCreate:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must be distinct")
        if self.mode is Mode.INTRADAY and self.sessions is not None:
            raise ValueError("`sessions` is for daily schedules")
        if self.decider is DeciderKind.REPLAY:
            raise ValueError("a schedule cannot replay: a replay plays one recorded run")
        if (self.live is not None and "session" in self.model_fields_set
                and self.session is not SessionRule.TODAY):
            raise ValueError("a live schedule plays the fire's own session (session: today)")
        return self

    def template(self) -> dict[str, Any]:
        """What each fire's run spec is made from (core.schedule.spec_for)."""
        body = self.model_dump(mode="json", exclude_none=True)
        keep = {"mode", "symbols", "session", "sessions", *OPTIONS}
        template = {k: v for k, v in body.items() if k in keep}
        if self.mode is Mode.DAILY:
            template.setdefault("sessions", 5)
        if self.live is not None:  # a live run plays the fire's session, as it happens
            template["session"] = SessionRule.TODAY.value
            template.update({k: v.value if hasattr(v, "value") else v
                             for k, v in self.live_fill({}).items()})
        return template


class FireOut(BaseModel):
    due_at: dt.datetime
    outcome: FireOutcome
    run_id: int | None = Field(description="The run it made (fired)")
    reason: str | None = Field(description="Why it made none (missed, failed)")
    recorded_at: dt.datetime

    @classmethod
    def of(cls, fire: ScheduleFire) -> FireOut:
        return cls(due_at=fire.due_at, outcome=fire.outcome, run_id=fire.run_id,
                   reason=fire.reason, recorded_at=fire.recorded_at)


class ScheduleOut(BaseModel):
    id: int
    name: str | None
    model_id: int
    cron: str
    timezone: str = Field(default=NEW_YORK, description="The cron's time zone")
    calendar: str = Field(default=EXCHANGE, description="Fires fall on its sessions only")
    template: dict[str, Any] = Field(description="The run each fire makes, without dates")
    make_up_seconds: int
    paused: bool
    created_at: dt.datetime
    next_fires: list[dt.datetime] = Field(description="The next three (none while paused)")
    recent_fires: list[FireOut] = Field(description="The latest due times, newest first")

    @classmethod
    def of(cls, schedule: Schedule, next_fires: list[dt.datetime],
           fires: list[ScheduleFire]) -> ScheduleOut:
        return cls(id=schedule.id, name=schedule.name, model_id=schedule.model_id,
                   cron=schedule.cron, template=schedule.template,
                   make_up_seconds=schedule.make_up_seconds, paused=schedule.paused,
                   created_at=schedule.created_at, next_fires=next_fires,
                   recent_fires=[FireOut.of(f) for f in fires])


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
