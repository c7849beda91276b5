"""A run's event stream as every CLI command reads it: each event once, in order, to the
final `result`, across dropped connections and API restarts.

httpx-sse dispatches a keep-alive comment (`: ping`, every 15 s) as an event with empty
data and the last id; the SSE standard dispatches nothing for it, so neither does this.
A connection that ends or breaks is opened again with Last-Event-ID, so the server
replays exactly what was missed; the reader gives up only after `give_up_seconds`
without any answer from the API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse

from api.cli.client import ApiClient, ApiError, problem_detail

# Longer than the server's keep-alive (15 s by default), so only a dead connection trips it.
READ_TIMEOUT_SECONDS = 60.0
RECONNECT_SECONDS = 1.0
GIVE_UP_SECONDS = 120.0
# Statuses a proxy or a restarting API answers for a while; anything else 4xx/5xx is final.
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RunEvent:
    """One event of the run's log: `id` resumes after it (None only for a final result
    the API rebuilt from the database)."""

    id: str | None
    type: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "data": self.data}


def run_events(client: ApiClient, run_id: int, *, after: str | None = None,
               reconnect_seconds: float = RECONNECT_SECONDS,
               give_up_seconds: float = GIVE_UP_SECONDS,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[RunEvent]:
    """Every event of the run after `after` (all without it), ending with `result`."""
    last_id = after
    silent_since: float | None = None
    while True:
        try:
            for event in _connection(client, run_id, last_id):
                silent_since = None
                last_id = event.id or last_id
                yield event
                if event.type == "result":
                    return
        except (httpx.TransportError, SSEError, _Unavailable):
            pass  # the API went away or restarted: resume after the last event seen
        now = clock()
        silent_since = now if silent_since is None else silent_since
        if now - silent_since > give_up_seconds:
            raise ApiError(0, f"lost the event stream of run {run_id} for "
                              f"{give_up_seconds:.0f}s; resume with `tickrun runs follow "
                              f"{run_id}`")
        sleep(reconnect_seconds)


class _Unavailable(Exception):
    """The API answered that it cannot serve the stream now (a proxy's 502-504)."""


def _connection(client: ApiClient, run_id: int, last_id: str | None) -> Iterator[RunEvent]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    timeout = httpx.Timeout(30.0, read=READ_TIMEOUT_SECONDS)
    with connect_sse(client.http, "GET", f"/v1/runs/{run_id}/events", headers=headers,
                     timeout=timeout) as source:
        response = source.response
        if response.status_code in RETRY_STATUSES:
            raise _Unavailable(response.status_code)
        if response.status_code >= 400:
            response.read()
            raise ApiError(response.status_code, problem_detail(response))
        for sse in source.iter_sse():
            event = parse(sse)
            if event is not None:
                yield event


def parse(sse: ServerSentEvent) -> RunEvent | None:
    """The event an SSE message carries; None for what the standard does not dispatch (a
    comment or a message without data)."""
    if not sse.data:
        return None
    try:
        body = json.loads(sse.data)
        # The body's own id: the SSE id field carries the previous one on an event that
        # has none (a final result the API rebuilt from the database).
        return RunEvent(id=body.get("id"), type=sse.event, data=dict(body["data"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(0, f"unreadable {sse.event!r} event {sse.id!r} from the API: "
                          f"{sse.data[:200]!r}") from exc
