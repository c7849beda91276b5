"""An event is encoded once for all of a run's followers, and never served for another."""

from __future__ import annotations

import datetime as dt

from api.sse import FrameCache
from core.eventlog import Event, EventType

T = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def event(run_id: int, event_id: str, time: dt.datetime, step: int) -> Event:
    return Event(id=event_id, run_id=run_id, type=EventType.PROGRESS, data={"step": step},
                 time=time)


def test_an_event_is_encoded_once_for_every_follower() -> None:
    encoded: list[str] = []

    def encode(e: Event) -> bytes:
        encoded.append(e.id)
        return f"id: {e.id}\ndata: {e.data}\n\n".encode()

    cache = FrameCache()
    first = event(1, "7", T, 3)
    frames = [cache.get(first, encode) for _ in range(1000)]
    assert encoded == ["7"] and len(set(frames)) == 1
    # The same id again for a new run of that id (SQLite ids restart after a delete),
    # or in another run: a frame of its own.
    reused = event(1, "7", T + dt.timedelta(microseconds=1), 4)
    assert cache.get(reused, encode) != frames[0]
    assert cache.get(event(2, "7", T, 3), encode) and encoded == ["7", "7", "7"]


def test_the_cache_keeps_the_newest_frames_only() -> None:
    cache = FrameCache(size=3)
    for i in range(5):
        cache.get(event(1, str(i), T, i), lambda e: e.id.encode())
    hits: list[str] = []

    def encode(e: Event) -> bytes:
        hits.append(e.id)
        return e.id.encode()

    for i in range(5):
        cache.get(event(1, str(i), T, i), encode)
    assert hits[:2] == ["0", "1"]
