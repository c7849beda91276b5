"""GET /v1/runs/{id}/events: Server-Sent Events that resume with Last-Event-ID."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import CallerDep, ServicesDep
from api.errors import problems
from api.services import Services
from api.sse import RUN_ENDED
from core.errors import NotFound
from core.eventlog import EVENT_ID_PATTERN, Event
from core.eventlog.payloads import result_data

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/runs", tags=["events"], responses=problems(401))

STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "text/event-stream of status, progress, decision, trade, order, log and result "
                   "events; the last one is `result`",
    "content": {"text/event-stream": {}}},
    **problems(404, 422)}
EventId = Annotated[str | None, Header(
    alias="Last-Event-ID", pattern=EVENT_ID_PATTERN,
    description="The id of the last event received: the stream resumes after it")]


@router.get("/{run_id}/events", response_class=EventSourceResponse, responses=STREAM_DOC)
async def run_events(
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], who: CallerDep, svc: ServicesDep,
    last_event_id: EventId = None,
    after: Annotated[str | None, Query(pattern=EVENT_ID_PATTERN,
                                       description="Same as Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Replays the run's events after Last-Event-ID (all of them without it), then
    follows live ones; ends after the final `result` event."""
    await svc.run_reads.get_run(run_id, who.user_id)  # 404 for others' runs
    resume = last_event_id or after
    if resume is not None:
        resume = svc.events.resume_point(resume)
    return EventSourceResponse(_sse(svc, run_id, resume), ping=svc.settings.sse_heartbeat_seconds,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _sse(svc: Services, run_id: int, after: str | None
               ) -> AsyncIterator[ServerSentEvent | bytes]:
    async for item in svc.hub.stream(run_id, after):
        if item is RUN_ENDED:
            final = await _final_from_store(svc, run_id)
            if final is not None:
                yield final
            return
        if isinstance(item, Event):
            yield svc.hub.frames.get(item, lambda event: _message(event).encode())
        # FEED_LOST: end the stream; the client resumes after its Last-Event-ID


def _message(event: Event) -> ServerSentEvent:
    return ServerSentEvent(id=event.id, event=event.type.value,
                           data=json.dumps(event.to_json(), separators=(",", ":"), default=str))


async def _final_from_store(svc: Services, run_id: int) -> ServerSentEvent | None:
    """The run ended but its final event never reached the log (Redis was down). None
    when the database cannot say now: the stream ends and the client resumes later,
    rather than being told a live run was deleted."""
    try:
        run = await svc.run_reads.get_run(run_id)
        data = result_data(run.status, run.status_reason, run.result)
    except NotFound:
        data = result_data("deleted", "the run was deleted", None)
    except Exception as exc:
        log.warning("run %d: final status unknown (%s); ending the stream", run_id, exc)
        return None
    body = {"id": None, "run_id": run_id, "type": "result", "time": None, "data": data}
    return ServerSentEvent(event="result", data=json.dumps(body, default=str))
