"""Live events for many followers: one reader per followed run, fanned out.

A follower replays the run's history from its Last-Event-ID, then takes live events
from the run's feed, which reads the event log once for all its followers. The order
is what makes the hand-over exact: the follower joins the feed, waits until the feed
has fixed the id it reads after, and only then replays. The replay therefore reaches at
least that id, every later event comes through the feed, and what the replay already
sent is dropped by id: nothing missed, nothing twice, however the two interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Final

from core.eventlog import FINAL_EVENT, Event, EventLog

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
READ_BLOCK_MS = 1000
RETRY_SECONDS = 1.0

# Returns True when the run is final (or gone): a quiet feed then ends its followers,
# who would otherwise wait forever for a final event that was never appended.
RunEnded = Callable[[int], bool]


class FeedItem:
    """What a feed hands its followers besides events."""


RUN_ENDED: Final = FeedItem()  # final in the store, yet no final event in the log
FEED_LOST: Final = FeedItem()  # the feed failed: end the stream, the client resumes

Live = asyncio.Queue[Event | FeedItem]


class RunFeed:
    def __init__(self, hub: EventHub, run_id: int) -> None:
        self.hub = hub
        self.run_id = run_id
        self.followers: set[Live] = set()
        self.positioned = asyncio.Event()  # set once the feed knows where it reads from
        self.task: asyncio.Task[None] | None = None

    async def read_live(self) -> None:
        try:
            after = await self._newest_id()
            self.positioned.set()
            await self._follow(after)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave followers waiting forever
            log.exception("run %d: event feed failed; its followers reconnect", self.run_id)
            self._fan_out(FEED_LOST)
            self.positioned.set()

    async def _newest_id(self) -> str | None:
        hub, loop = self.hub, asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(hub.pool, hub.events.last_id, self.run_id)
            except Exception as exc:
                log.warning("run %d: event log unreachable (%s); retrying", self.run_id, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self, after: str | None) -> None:
        hub, loop = self.hub, asyncio.get_running_loop()
        quiet_since, ended = loop.time(), False
        while self.followers:
            try:
                batch = await loop.run_in_executor(
                    hub.pool, partial(hub.events.read, self.run_id, after,
                                      block_ms=READ_BLOCK_MS))
            except Exception as exc:
                log.warning("run %d: event log read failed (%s); retrying", self.run_id, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for event in batch:
                self._fan_out(event)
                after = event.id
            if batch:
                quiet_since, ended = loop.time(), False
            elif ended:  # final in the store and still nothing after one more read
                self._fan_out(RUN_ENDED)
            elif loop.time() - quiet_since >= hub.end_check_seconds:
                quiet_since = loop.time()
                ended = await self._run_ended()

    async def _run_ended(self) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.hub.pool, self.hub.run_ended, self.run_id)
        except Exception as exc:  # a database blip is not an ending
            log.warning("run %d: status unknown (%s); the feed goes on", self.run_id, exc)
            return False

    def _fan_out(self, item: Event | FeedItem) -> None:
        for queue in self.followers:
            queue.put_nowait(item)


class FrameCache:
    """Every follower of a run gets the same events: each is encoded once for all of
    them (1,000 followers were 1,000 JSON encodings of every event). Keyed by the run,
    the event's id and its time: an id a deleted run's events had (SQLite ids restart)
    never finds another event's frame. Only the event loop uses it; the newest `size`
    frames are kept."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._frames: OrderedDict[tuple[int, str, dt.datetime], bytes] = OrderedDict()

    def get(self, event: Event, encode: Callable[[Event], bytes]) -> bytes:
        key = (event.run_id, event.id, event.time)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = encode(event)
            if len(self._frames) > self.size:
                self._frames.popitem(last=False)
        return frame


class EventHub:
    def __init__(self, events: EventLog, run_ended: RunEnded, *,
                 end_check_seconds: float = 2.0, threads: int = 64) -> None:
        self.events = events
        self.run_ended = run_ended
        self.end_check_seconds = end_check_seconds
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="event-feed")
        self.feeds: dict[int, RunFeed] = {}
        self.frames = FrameCache()

    @contextlib.asynccontextmanager
    async def follow_live(self, run_id: int) -> AsyncIterator[Live]:
        """A queue of the run's live events, from a position the feed has already fixed:
        whatever the caller replays from the log afterwards reaches at least there."""
        queue: Live = asyncio.Queue()
        feed = self.feeds.get(run_id)
        if feed is None or (feed.task is not None and feed.task.done()):
            feed = self.feeds[run_id] = RunFeed(self, run_id)
            feed.task = asyncio.create_task(feed.read_live(), name=f"feed-{run_id}")
        feed.followers.add(queue)
        try:
            await feed.positioned.wait()
            yield queue
        finally:
            feed.followers.discard(queue)
            if not feed.followers and self.feeds.get(run_id) is feed:
                del self.feeds[run_id]

    async def stream(self, run_id: int, after: str | None) -> AsyncIterator[Event | FeedItem]:
        """History after `after`, then live events, ending after the final event. Ends
        with RUN_ENDED when the run ended without a final event in the log, and with
        FEED_LOST when the live feed failed (the client resumes with Last-Event-ID)."""
        async with self.follow_live(run_id) as live:
            async for event in self._replay(run_id, after):
                yield event
                after = event.id
                if event.type is FINAL_EVENT:
                    return
            key = self.events.order_key
            while True:
                item = await live.get()
                if isinstance(item, FeedItem):
                    yield item
                    return
                if after is not None and key(item.id) <= key(after):
                    continue  # the replay sent it already
                yield item
                after = item.id
                if item.type is FINAL_EVENT:
                    return

    async def _replay(self, run_id: int, after: str | None) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        while True:
            batch = await loop.run_in_executor(
                self.pool, partial(self.events.read, run_id, after, count=REPLAY_BATCH))
            for event in batch:
                yield event
                after = event.id
            if len(batch) < REPLAY_BATCH:
                return

    def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task:
                feed.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
