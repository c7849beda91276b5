"""The live view of runs: an append-only event stream per run plus a progress hash."""

from core.eventlog.base import Event, EventLog, EventType
from core.eventlog.factory import open_event_log

__all__ = ["Event", "EventLog", "EventType", "open_event_log"]
