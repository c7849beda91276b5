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
from dataclasses import dataclass
from typing import Any

from core.eventlog import EventLog, EventType
from runner.telemetry import EVENTS_DROPPED

log = logging.getLogger(__name__)

FLUSH_CHUNK = 500  # events per batch when a backlog drains


@dataclass(frozen=True, slots=True)
class _InFlight:
    answer: Callable[[], None]  # waits for the log's reply; raises as append_batch would
    events: int  # the first this many of the buffer
    progress: dict[str, Any] | None


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
        self._in_flight: _InFlight | None = None  # the batch sent whose answer is unread
        self.dropped = 0

    def publish(self, type: EventType, data: dict[str, Any]) -> None:
        self._queue(type, data)
        self.flush()

    def publish_step(self, events: list[tuple[EventType, dict[str, Any]]],
                     progress: dict[str, Any]) -> None:
        """A step's events and its progress, sent together in one round trip; the log's
        answer is read when the next step publishes (or at flush, finish, progress), so
        the next step's decision overlaps the log's write."""
        for type, data in events:
            self._queue(type, data)
        self._progress = progress
        self._send(leave_last_in_flight=True)

    def _queue(self, type: EventType, data: dict[str, Any]) -> None:
        if len(self._pending) >= self._buffer_size:
            self._answered()  # the batch in flight leaves the buffer if it landed
        if len(self._pending) >= self._buffer_size:
            self._pending.popleft()
            self.dropped += 1
            EVENTS_DROPPED.inc()
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("event log unavailable: %d event(s) dropped so far", self.dropped)
        self._pending.append((type, data))

    def progress(self, progress: dict[str, Any]) -> None:
        if self._clock() < self._down_until or not self._answered():
            return
        try:
            self._log.set_progress(self._run_id, progress)
        except Exception as exc:  # the live view may lag; the run goes on
            self._mark_down(exc)

    def flush(self) -> bool:
        """Send what is pending (and the newest progress) and wait for the log's answer;
        False when the log is (still) unavailable. A batch is written whole or not at
        all, so a retry doubles nothing; a long backlog goes out in chunks."""
        return self._send(leave_last_in_flight=False)

    def _send(self, *, leave_last_in_flight: bool) -> bool:
        if self._clock() < self._down_until or not self._answered():
            return False
        while self._pending or self._progress is not None:
            n = min(len(self._pending), FLUSH_CHUNK)
            chunk = [self._pending[i] for i in range(n)]
            progress = self._progress if n == len(self._pending) else None
            try:
                answer = self._log.send_batch(self._run_id, chunk, progress)
            except Exception as exc:
                self._mark_down(exc)
                return False
            self._in_flight = _InFlight(answer, n, progress)
            if leave_last_in_flight and progress is not None:
                return True  # its answer is read by the next send, the step's work between
            if not self._answered():
                return False
        return True

    def _answered(self) -> bool:
        """The answer to the batch in flight, if any: its events leave the buffer; when
        it failed they stay, first, to be sent again after the pause."""
        sent, self._in_flight = self._in_flight, None
        if sent is None:
            return True
        try:
            sent.answer()
        except Exception as exc:
            self._mark_down(exc)
            return False
        for _ in range(sent.events):
            self._pending.popleft()
        if self._progress is sent.progress:
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
