"""/v1/schedules: run templates fired by a cron rule in New York time on XNYS sessions;
the controller's leader makes each fire's run, once."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import ValidationError

from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem, first_problem, problems
from api.paging import CursorQuery, decode_cursor, keyset_page
from api.routes.runs import playable_spec
from api.schedule_schemas import FireOut, ScheduleCreate, ScheduleOut, SchedulePage
from api.services import Services
from core.errors import InvalidSpec
from core.records import Schedule
from core.schedule import next_fires, spec_for

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=problems(401))

ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Schedule id")]
ONE_SCHEDULE = problems(404, 422)
SHOWN_FIRES = 10


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _out(svc: Services, schedule: Schedule) -> ScheduleOut:
    upcoming = [] if schedule.paused else next_fires(
        schedule.cron, max(_now(), schedule.fired_through), 3)
    return ScheduleOut.of(schedule, upcoming,
                          svc.store.list_fires(schedule.id, limit=SHOWN_FIRES))


@router.post("", status_code=201, response_model=ScheduleOut, responses={
    **problems(400, 413, 422, why={
        422: "The body does not validate (a cron that is not five fields, a replay), the "
             "rule never fires on an XNYS session, or its next run could not be played "
             "(an unknown model, no data source): nothing is stored"})})
def create_schedule(body: ScheduleCreate, who: CallerDep, svc: ServicesDep,
                    response: Response) -> ScheduleOut:
    """Store the schedule; its first fire is the rule's next time on a session. Its next
    run is checked now as POST /v1/runs would check it.

    A body the schema allows can still be refused (422) for what no schema can say: cron
    syntax beyond five fields of the right characters, a rule that never falls on an
    XNYS session, or a next run that POST /v1/runs would refuse."""
    template = body.template()
    upcoming = next_fires(body.cron, _now(), 1)
    if not upcoming:
        raise ApiProblem(422, f"cron {body.cron!r} never falls on an XNYS session within "
                              "the exchange calendar")
    first = upcoming[0]
    try:
        spec = playable_spec(svc, spec_for(template, first), body.model_id, who.user_id,
                             at=first)
    except ValidationError as exc:
        raise ApiProblem(422, f"the run of {first.isoformat()}: {first_problem(exc)}") from exc
    except InvalidSpec as exc:
        hint = ("; fire after the close, or play the last closed session (`session: "
                "last_closed`)") if "has not closed yet" in str(exc) else ""
        raise ApiProblem(422, f"the run of {first.isoformat()}: {exc}{hint}") from exc
    if spec.data is not None:  # resolved now: the controller plays what was checked
        template["data"] = spec.data.value
    schedule = svc.store.create_schedule(who.user_id, body.model_id, body.name, body.cron,
                                         template, body.make_up_seconds)
    svc.wake_controller()
    response.headers["Location"] = f"/v1/schedules/{schedule.id}"
    return _out(svc, schedule)


@router.get("", response_model=SchedulePage, responses=problems(400, 422))
def list_schedules(who: CallerDep, svc: ServicesDep,
                   cursor: CursorQuery = None,
                   limit: Annotated[int, Query(ge=1, le=100)] = 20) -> SchedulePage:
    """The caller's schedules, newest first, each with its next three fires."""
    found, next_cursor = keyset_page(
        svc.store.list_schedules(who.user_id, before_id=decode_cursor(cursor), limit=limit + 1),
        limit, lambda s: s.id)
    return SchedulePage(items=[_out(svc, s) for s in found], next_cursor=next_cursor)


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=ONE_SCHEDULE)
def get_schedule(schedule_id: ScheduleId, who: CallerDep, svc: ServicesDep) -> ScheduleOut:
    """The schedule, its next three fires and its latest fires with the runs they made."""
    return _out(svc, svc.store.get_schedule(schedule_id, who.user_id))


@router.get("/{schedule_id}/fires", response_model=list[FireOut], responses=ONE_SCHEDULE)
def list_fires(schedule_id: ScheduleId, who: CallerDep, svc: ServicesDep,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[FireOut]:
    """Every due time recorded, newest first: the run it made, or why none."""
    svc.store.get_schedule(schedule_id, who.user_id)
    return [FireOut.of(f) for f in svc.store.list_fires(schedule_id, limit=limit)]


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=ONE_SCHEDULE)
def pause_schedule(schedule_id: ScheduleId, who: CallerDep, svc: ServicesDep) -> ScheduleOut:
    """No fire while paused; the runs it made go on."""
    return _out(svc, svc.store.pause_schedule(schedule_id, who.user_id, True))


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=ONE_SCHEDULE)
def resume_schedule(schedule_id: ScheduleId, who: CallerDep, svc: ServicesDep
                    ) -> ScheduleOut:
    """Fire again from now on; the due times passed while paused are not made up."""
    schedule = svc.store.pause_schedule(schedule_id, who.user_id, False)
    svc.wake_controller()
    return _out(svc, schedule)


@router.delete("/{schedule_id}", status_code=204, responses=ONE_SCHEDULE)
def delete_schedule(schedule_id: ScheduleId, who: CallerDep, svc: ServicesDep) -> Response:
    """Delete the schedule and its fire records; the runs it made stay."""
    svc.store.delete_schedule(schedule_id, who.user_id)
    return Response(status_code=204)
