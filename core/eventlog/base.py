"""Event log interface.

Event ids are opaque strings that increase within a run's stream (Redis stream ids, or
SQLite row ids), so a client that hands back the last id it saw (SSE Last-Event-ID)
resumes exactly after it: nothing missed, nothing twice.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

# What a client may send as Last-Event-ID: an id of either log's shape (Redis stream ids
# `ms-seq`, SQLite's numbers), each part below 2**63 so that any store can bind it.
EVENT_ID_PATTERN = r"^[0-9]{1,18}(-[0-9]{1,18})?$"


class EventType(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    DECISION = "decision"
    TRADE = "trade"
    ORDER = "order"  # a state change of an order: placed, triggered, filled, ... refused
    LOG = "log"
    RESULT = "result"


# The last event of every run; a follower stops after it.
FINAL_EVENT = EventType.RESULT


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    run_id: int
    type: EventType
    data: dict[str, Any]
    time: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "type": self.type.value,
                "time": self.time.isoformat(), "data": self.data}


if TYPE_CHECKING:
    from core.eventlog.async_progress import ProgressReads


class EventLog(ABC):
    @abstractmethod
    def append(self, run_id: int, type: EventType, data: dict[str, Any]) -> str:
        """Append one event; returns its id. Raises on a log that cannot be reached."""

    @abstractmethod
    def read(self, run_id: int, after: str | None = None, *, count: int = 500,
             block_ms: int = 0) -> list[Event]:
        """Events after `after` (all when None), waiting up to block_ms for the first."""

    @abstractmethod
    def last_id(self, run_id: int) -> str | None:
        """The id of the run's newest event, None when it has none."""

    def order_key(self, event_id: str) -> tuple[int, ...]:
        """Ids compare in append order by this key."""
        return tuple(int(part) for part in event_id.split("-"))

    @abstractmethod
    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None: ...

    def append_each(self, events: Sequence[tuple[int, EventType, dict[str, Any]]]) -> None:
        """One event to each of several runs' logs ((run id, type, data)): an admission
        pass's status events, in one round trip where the log can batch them. Raises
        when the log cannot be reached (some may have been appended)."""
        for run_id, type, data in events:
            self.append(run_id, type, data)

    def append_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                     progress: dict[str, Any] | None = None) -> None:
        """Append `events` in order and set `progress` (a step's worth): all or none,
        in one round trip, in the logs that can (both here do); raises on a log that
        cannot be reached."""
        for type, data in events:
            self.append(run_id, type, data)
        if progress:
            self.set_progress(run_id, progress)

    def send_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                   progress: dict[str, Any] | None = None) -> Callable[[], None]:
        """append_batch, its reply awaited later: the batch is sent now and the call
        returned waits for the log's answer (raising as append_batch would), so the
        caller's next work overlaps the log's. Here, a log that answers at once."""
        self.append_batch(run_id, events, progress)
        return already_answered

    @abstractmethod
    def get_progress(self, run_id: int) -> dict[str, Any]: ...

    def get_progress_many(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The progress of several runs (a list page's): one round trip where the log
        can batch them."""
        return {run_id: self.get_progress(run_id) for run_id in run_ids}

    def async_progress(self) -> ProgressReads:
        """Progress reads for an event loop (the API's); close them in that loop."""
        from core.eventlog.async_progress import ThreadedProgressReads

        return ThreadedProgressReads(self)

    @abstractmethod
    def finish(self, run_id: int) -> None:
        """The run ended: keep its stream for replay only for the configured TTL."""

    @abstractmethod
    def delete(self, run_id: int) -> None: ...

    @abstractmethod
    def ping(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def resume_point(self, event_id: str) -> str:
        """The id in this log that a client's Last-Event-ID (of EVENT_ID_PATTERN) names:
        here ids are numbers, and a stream id `ms-seq` is read as its first part."""
        return str(int(event_id.partition("-")[0]))


def already_answered() -> None:
    """The reply of a batch written synchronously: nothing to wait for."""
