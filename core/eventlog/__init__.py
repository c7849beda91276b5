"""The live view of runs: an append-only event stream per run plus a progress hash."""

from core.eventlog.base import EVENT_ID_PATTERN, FINAL_EVENT, Event, EventLog, EventType
from core.eventlog.factory import open_event_log

__all__ = ["EVENT_ID_PATTERN", "FINAL_EVENT", "Event", "EventLog", "EventType", "open_event_log"]
