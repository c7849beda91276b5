"""Live events for many followers: one reader per followed run, fanned out.

A follower first replays the run's history from its Last-Event-ID, then takes live
events from the run's feed, which reads the event log once for all its followers. The
follower registers with the feed *before* replaying and drops what it already sent, so
an event appended during the hand-over is neither missed nor sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from core.eventlog import FINAL_EVENT, Event, EventLog

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
READ_BLOCK_MS = 1000

# Returns True when the run is final (or gone): a quiet feed then ends its followers,
# who would otherwise wait forever for a final event that was never appended.
RunEnded = Callable[[int], bool]


class RunFeed:
    def __init__(self, hub: EventHub, run_id: int) -> None:
        self.hub = hub
        self.run_id = run_id
        self.followers: set[asyncio.Queue[Event | None]] = set()
        self.task: asyncio.Task[None] | None = None

    async def read_live(self) -> None:
        hub, loop = self.hub, asyncio.get_running_loop()
        after = await loop.run_in_executor(hub.pool, hub.events.last_id, self.run_id)
        quiet_since, ended = loop.time(), False
        while self.followers:
            try:
                batch = await loop.run_in_executor(
                    hub.pool, partial(hub.events.read, self.run_id, after,
                                      block_ms=READ_BLOCK_MS))
            except Exception as exc:
                log.warning("run %d: event log read failed (%s); retrying", self.run_id, exc)
                await asyncio.sleep(1.0)
                continue
            for event in batch:
                self._fan_out(event)
                after = event.id
            if batch:
                quiet_since, ended = loop.time(), False
            elif ended:  # final in the store and still nothing after one more read
                self._fan_out(None)
            elif loop.time() - quiet_since >= hub.end_check_seconds:
                quiet_since = loop.time()
                ended = await loop.run_in_executor(hub.pool, hub.run_ended, self.run_id)

    def _fan_out(self, event: Event | None) -> None:
        for queue in self.followers:
            queue.put_nowait(event)


class EventHub:
    def __init__(self, events: EventLog, run_ended: RunEnded, *,
                 end_check_seconds: float = 2.0, threads: int = 64) -> None:
        self.events = events
        self.run_ended = run_ended
        self.end_check_seconds = end_check_seconds
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="event-feed")
        self.feeds: dict[int, RunFeed] = {}

    @contextlib.asynccontextmanager
    async def follow_live(self, run_id: int) -> AsyncIterator[asyncio.Queue[Event | None]]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(self, run_id)
        feed.followers.add(queue)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(feed.read_live(), name=f"feed-{run_id}")
        try:
            yield queue
        finally:
            feed.followers.discard(queue)
            if not feed.followers and self.feeds.get(run_id) is feed:
                del self.feeds[run_id]

    async def stream(self, run_id: int, after: str | None) -> AsyncIterator[Event | None]:
        """History after `after`, then live events, ending after the final event.
        A None means the run ended without a final event in the log."""
        loop, key = asyncio.get_running_loop(), self.events.order_key
        async with self.follow_live(run_id) as live:
            while True:
                batch = await loop.run_in_executor(
                    self.pool, partial(self.events.read, run_id, after, count=REPLAY_BATCH))
                for event in batch:
                    yield event
                    after = event.id
                    if event.type is FINAL_EVENT:
                        return
                if len(batch) < REPLAY_BATCH:
                    break
            while True:
                item = await live.get()
                if item is None:
                    yield None
                    return
                if after is not None and key(item.id) <= key(after):
                    continue
                yield item
                after = item.id
                if item.type is FINAL_EVENT:
                    return

    def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task:
                feed.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
