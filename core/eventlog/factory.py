"""Pick the event log: Redis Streams when a Redis URL is set, else the SQLite file."""

from __future__ import annotations

from core.eventlog.base import EventLog
from core.settings import CoreSettings


def open_event_log(settings: CoreSettings) -> EventLog:
    if settings.redis_url is not None:
        from core.eventlog.redis_log import RedisEventLog

        return RedisEventLog(settings.redis_url.get_secret_value(),
                             maxlen=settings.event_stream_maxlen,
                             ttl_seconds=settings.event_stream_ttl_seconds,
                             timeout_seconds=settings.redis_timeout_seconds,
                             prefix=settings.redis_key_prefix)
    url = settings.database_url.get_secret_value()
    if not url.startswith("sqlite:///"):
        raise ValueError("TICKRUN_REDIS_URL is required with a PostgreSQL database")
    from core.eventlog.sqlite_log import SqliteEventLog
    from core.store.sqlite import SqliteStore

    return SqliteEventLog(SqliteStore(url.removeprefix("sqlite:///")))
