"""Publishing events without ever blocking a step for long.

The database is the record; events are the live view. When the event log fails, events
wait in a bounded buffer and are retried after a pause (in order, so ids stay in
order); when the buffer is full the oldest are dropped with a warning and a metric.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from core.eventlog import EventLog, EventType
from runner.telemetry import EVENTS_DROPPED

log = logging.getLogger(__name__)

FLUSH_CHUNK = 500  # events per batch when a backlog drains


class EventPublisher:
    def __init__(self, event_log: EventLog, run_id: int, *, buffer_size: int = 5000,
                 retry_after_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = event_log
        self._run_id = run_id
        self._pending: deque[tuple[EventType, dict[str, Any]]] = deque()
        self._buffer_size = buffer_size
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._down_until = 0.0
        self._progress: dict[str, Any] | None = None  # the newest, sent with the next batch
        self.dropped = 0

    def publish(self, type: EventType, data: dict[str, Any]) -> None:
        self._queue(type, data)
        self.flush()

    def publish_step(self, events: list[tuple[EventType, dict[str, Any]]],
                     progress: dict[str, Any]) -> None:
        """A step's events and its progress, sent together in one round trip."""
        for type, data in events:
            self._queue(type, data)
        self._progress = progress
        self.flush()

    def _queue(self, type: EventType, data: dict[str, Any]) -> None:
        if len(self._pending) >= self._buffer_size:
            self._pending.popleft()
            self.dropped += 1
            EVENTS_DROPPED.inc()
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("event log unavailable: %d event(s) dropped so far", self.dropped)
        self._pending.append((type, data))

    def progress(self, progress: dict[str, Any]) -> None:
        if self._clock() < self._down_until:
            return
        try:
            self._log.set_progress(self._run_id, progress)
        except Exception as exc:  # the live view may lag; the run goes on
            self._mark_down(exc)

    def flush(self) -> bool:
        """Send what is pending (and the newest progress) at once; False when the log
        is (still) unavailable. A batch is written whole or not at all, so a retry
        doubles nothing; a long backlog goes out in chunks."""
        if self._clock() < self._down_until:
            return False
        while self._pending or self._progress is not None:
            chunk = [self._pending[i] for i in range(min(len(self._pending), FLUSH_CHUNK))]
            progress = self._progress if len(chunk) == len(self._pending) else None
            try:
                self._log.append_batch(self._run_id, chunk, progress)
            except Exception as exc:
                self._mark_down(exc)
                return False
            for _ in chunk:
                self._pending.popleft()
            if progress is not None:
                self._progress = None
        return True

    def finish(self, deadline_seconds: float) -> None:
        """Last chance for buffered events, bounded by the stop budget."""
        end = self._clock() + deadline_seconds
        self._down_until = 0.0
        while not self.flush() and self._clock() < end:
            time.sleep(min(0.2, max(0.0, end - self._clock())))
            self._down_until = 0.0
        if self._pending:
            log.warning("%d event(s) could not be delivered before exit", len(self._pending))
            return
        try:
            self._log.finish(self._run_id)
        except Exception as exc:
            log.warning("could not set the event stream's TTL: %s", exc)

    def _mark_down(self, exc: Exception) -> None:
        if self._down_until == 0.0 or self._clock() >= self._down_until:
            log.warning("event log unavailable (%s); retrying in %.1fs", type(exc).__name__,
                        self._retry_after)
        self._down_until = self._clock() + self._retry_after
