"""Redis Streams event log: one stream per run (XADD with an approximate cap) and a
progress hash; both get a TTL when the run ends. Pub/sub is never the record."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, cast

import redis

from core.eventlog.base import Event, EventLog, EventType

STREAM_ID = re.compile(r"^\d+-\d+$")


def stream_key(run_id: int, prefix: str = "tickrun") -> str:
    return f"{prefix}:run:{run_id}:events"


def progress_key(run_id: int, prefix: str = "tickrun") -> str:
    return f"{prefix}:run:{run_id}:progress"


class RedisEventLog(EventLog):
    def __init__(self, url: str, *, maxlen: int = 100_000, ttl_seconds: int = 7 * 24 * 3600,
                 timeout_seconds: float = 0.5, prefix: str = "tickrun") -> None:
        self._prefix = prefix
        self._maxlen = maxlen
        self._ttl = ttl_seconds
        # Writes get a short timeout so a sick Redis cannot stall a trading step; blocking
        # reads get their own connections, sized for XREAD BLOCK.
        self._writer = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            decode_responses=True, retry_on_timeout=False,
        )
        self._reader = redis.Redis.from_url(
            url, socket_timeout=30, socket_connect_timeout=5, decode_responses=True,
            max_connections=200,
        )

    def append(self, run_id: int, type: EventType, data: dict[str, Any]) -> str:
        fields = {"type": type.value, "time": dt.datetime.now(dt.UTC).isoformat(),
                  "data": json.dumps(data, separators=(",", ":"), default=str)}
        return cast(str, self._writer.xadd(stream_key(run_id, self._prefix), fields,
                                           maxlen=self._maxlen, approximate=True))

    def read(self, run_id: int, after: str | None = None, *, count: int = 500,
             block_ms: int = 0) -> list[Event]:
        key = stream_key(run_id, self._prefix)
        if block_ms > 0:
            reply = self._reader.xread({key: after or "0-0"}, count=count, block=block_ms)
            entries = reply[0][1] if reply else []
        else:
            start = f"({after}" if after else "-"
            entries = self._reader.xrange(key, min=start, max="+", count=count)
        return [self._event(run_id, eid, fields) for eid, fields in entries]

    def last_id(self, run_id: int) -> str | None:
        newest = self._reader.xrevrange(stream_key(run_id, self._prefix), count=1)
        return str(newest[0][0]) if newest else None

    @staticmethod
    def _event(run_id: int, event_id: str, fields: dict[str, str]) -> Event:
        return Event(id=event_id, run_id=run_id, type=EventType(fields["type"]),
                     data=json.loads(fields["data"]),
                     time=dt.datetime.fromisoformat(fields["time"]))

    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None:
        mapping = {k: json.dumps(v, default=str) for k, v in progress.items()}
        self._writer.hset(progress_key(run_id, self._prefix), mapping=mapping)  # type: ignore[arg-type]

    def get_progress(self, run_id: int) -> dict[str, Any]:
        raw: dict[str, str] = self._reader.hgetall(progress_key(run_id, self._prefix))
        return {k: json.loads(v) for k, v in raw.items()}

    def finish(self, run_id: int) -> None:
        pipe = self._writer.pipeline()
        pipe.expire(stream_key(run_id, self._prefix), self._ttl)
        pipe.expire(progress_key(run_id, self._prefix), self._ttl)
        pipe.execute()

    def delete(self, run_id: int) -> None:
        self._writer.delete(stream_key(run_id, self._prefix), progress_key(run_id, self._prefix))

    def ping(self) -> None:
        self._reader.ping()

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def valid_id(self, event_id: str) -> bool:
        return bool(STREAM_ID.match(event_id))
