"""The CLI's one reader of a run's event stream, fed the bytes an API sends: keep-alive
comments between events, a connection that ends before the result, a proxy's 503."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from api.cli.client import ApiClient, ApiError
from api.cli.stream import run_events

PING = b": ping - 2026-12-06 10:00:00.000000+00:00\r\n\r\n"


def frame(event_id: str | None, kind: str, data: dict[str, object]) -> bytes:
    body = json.dumps({"id": event_id, "type": kind, "data": data})
    head = f"id: {event_id}\r\n" if event_id else ""
    return f"{head}event: {kind}\r\ndata: {body}\r\n\r\n".encode()


def client_answering(answers: Iterator[httpx.Response], seen: list[httpx.Request]
                     ) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)
    client = ApiClient(base_url="http://api.test", token="t")
    client.http = httpx.Client(base_url="http://api.test",
                               transport=httpx.MockTransport(handle))
    return client


def stream(*chunks: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=b"".join(chunks))


def test_comments_are_not_events_and_a_short_stream_is_resumed_after_its_last_id() -> None:
    seen: list[httpx.Request] = []
    answers = iter([
        stream(PING, frame("1-0", "status", {"status": "running"}), PING,
               frame("2-0", "progress", {"step": 1, "total": 2})),  # ends: no result yet
        httpx.Response(503, json={"detail": "restarting"}),
        stream(PING, frame("3-0", "progress", {"step": 2, "total": 2}), PING,
               frame(None, "result", {"status": "completed"})),
    ])
    client = client_answering(answers, seen)
    events = list(run_events(client, 7, sleep=lambda _: None))
    assert [(e.id, e.type) for e in events] == [
        ("1-0", "status"), ("2-0", "progress"), ("3-0", "progress"), (None, "result")]
    assert [r.headers.get("Last-Event-ID") for r in seen] == [None, "2-0", "2-0"]
    assert all(r.url.path == "/v1/runs/7/events" for r in seen)


def test_a_refusal_is_an_error_and_silence_gives_up_after_its_deadline() -> None:
    client = client_answering(iter([httpx.Response(404, json={"detail": "run 7 not found"})]),
                              [])
    with pytest.raises(ApiError, match="run 7 not found"):
        list(run_events(client, 7))

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
    down = client_answering(iter([httpx.Response(502)] * 100), [])
    with pytest.raises(ApiError, match="lost the event stream of run 7"):
        list(run_events(down, 7, sleep=sleep, clock=lambda: now[0], give_up_seconds=10))
    assert 10 < now[0] <= 12
