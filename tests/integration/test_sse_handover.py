"""The hand-over from replay to the live feed, on both event logs (real Redis, SQLite).

The race: a follower that resumes replays the log while its run's feed fixes the id it
reads after. If the feed fixes it after the replay's last read, the events appended in
between reach neither. The wrapped log below makes that interleaving happen every time:
its newest-id lookup waits for a replay (a bounded wait) and appends events first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from api.sse import RUN_ENDED, EventHub
from core.eventlog import Event, EventLog, EventType

pytestmark = pytest.mark.timeout(60)
RUN = 7
T = TypeVar("T")


class LateFeedLog(EventLog):
    """An event log whose feed fixes its position late, with events landing before."""

    def __init__(self, inner: EventLog, landing: int) -> None:
        self.inner, self.landing = inner, landing
        self.replayed = threading.Event()

    def append(self, run_id: int, type: EventType, data: dict[str, Any]) -> str:
        return self.inner.append(run_id, type, data)

    def read(self, run_id: int, after: str | None = None, *, count: int = 500,
             block_ms: int = 0) -> list[Event]:
        batch = self.inner.read(run_id, after, count=count, block_ms=block_ms)
        if not block_ms:
            self.replayed.set()
        return batch

    def last_id(self, run_id: int) -> str | None:
        self.replayed.wait(0.5)  # the old hand-over replays first; the new one never does
        for i in range(self.landing):
            self.inner.append(run_id, EventType.PROGRESS, {"landed": i})
        return self.inner.last_id(run_id)

    def order_key(self, event_id: str) -> tuple[int, ...]:
        return self.inner.order_key(event_id)

    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None: ...

    def get_progress(self, run_id: int) -> dict[str, Any]:
        return {}

    def finish(self, run_id: int) -> None: ...

    def delete(self, run_id: int) -> None: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def run_on(hub: EventHub, scenario: Coroutine[Any, Any, T]) -> T:
    """Play a scenario against the hub in a fresh event loop; close the hub after."""
    try:
        return asyncio.run(scenario)
    finally:
        hub.close()


async def _follow(hub: EventHub, after: str | None, into: list[str]) -> None:
    async for item in hub.stream(RUN, after):
        assert isinstance(item, Event), item
        into.append(item.id)


def test_events_landing_during_the_hand_over_are_not_lost(event_log: EventLog) -> None:
    first = [event_log.append(RUN, EventType.PROGRESS, {"step": i}) for i in range(40)]
    wrapped = LateFeedLog(event_log, landing=25)
    hub = EventHub(wrapped, lambda run_id: False, end_check_seconds=60)
    got: list[str] = []

    async def scenario() -> None:
        follower = asyncio.create_task(_follow(hub, first[19], got))
        await asyncio.sleep(1.5)  # the feed is live: what is appended now comes through it
        for i in range(10):
            await asyncio.to_thread(event_log.append, RUN, EventType.PROGRESS, {"late": i})
        await asyncio.to_thread(event_log.append, RUN, EventType.RESULT, {"status": "done"})
        await asyncio.wait_for(follower, 20)

    run_on(hub, scenario())
    history = [e.id for e in event_log.read(RUN, first[19], count=10_000)]
    assert len(history) == 20 + 25 + 10 + 1
    assert got == history, "every event after Last-Event-ID exactly once, in order"


def test_a_failing_status_check_does_not_end_the_followers(event_log: EventLog) -> None:
    """A database blip while a run is quiet is not the end of the run."""
    calls = 0

    def flaky_run_ended(run_id: int) -> bool:
        nonlocal calls
        calls += 1
        raise ConnectionError("database restarting")

    hub = EventHub(event_log, flaky_run_ended, end_check_seconds=0.1)
    got: list[str] = []

    async def scenario() -> None:
        follower = asyncio.create_task(_follow(hub, None, got))
        await asyncio.sleep(1.5)
        assert not follower.done()
        await asyncio.to_thread(event_log.append, RUN, EventType.RESULT, {"status": "done"})
        await asyncio.wait_for(follower, 10)

    run_on(hub, scenario())
    assert calls >= 1 and len(got) == 1


def test_a_run_that_ended_without_its_final_event_ends_the_stream(event_log: EventLog) -> None:
    event_log.append(RUN, EventType.PROGRESS, {"step": 0})
    hub = EventHub(event_log, lambda run_id: True, end_check_seconds=0.1)

    async def scenario() -> list[object]:
        return [item async for item in hub.stream(RUN, None)]

    items = run_on(hub, asyncio.wait_for(scenario(), 15))
    assert len(items) == 2 and items[-1] is RUN_ENDED
