"""Redis Streams event log: one stream per run (XADD with an approximate cap) and a
progress hash; both get a TTL when the run ends. Pub/sub is never the record."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from core.eventlog.async_progress import (
    READ_PROGRESS,
    ProgressReads,
    RedisProgressReads,
    decode_progress,
    decode_progress_page,
)
from core.eventlog.base import Event, EventLog, EventType, already_answered

BLOCKING_TIMEOUT_SECONDS = 10.0  # socket timeout of XREAD BLOCK; longer blocks are capped


def _retry_once_on_broken_connection() -> Retry:
    """One quick retry when a pooled connection was closed under us (Redis restarted),
    none on a timeout: redis-py's default (3 retries on timeouts too, with backoff)
    turns a frozen Redis into minute-long hangs of every caller."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


# A step's events and its progress in one command, applied whole (a script runs alone):
# what a MULTI/EXEC of n XADDs and an HSET did, with one reply instead of n + 2.
# KEYS: the stream, the progress hash. ARGV: the stream's cap, the events' time, the
# number of events n, n (type, data) pairs, then the progress hash's field/value pairs.
APPEND_BATCH = """
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
             'type', ARGV[4 + 2 * i], 'time', ARGV[2], 'data', ARGV[5 + 2 * i])
end
if #ARGV > 3 + 2 * n then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4 + 2 * n))
end
return n
"""
APPEND_BATCH_SHA = hashlib.sha1(APPEND_BATCH.encode()).hexdigest()  # EVALSHA's name for it


def stream_key(run_id: int, prefix: str = "tickrun") -> str:
    return f"{prefix}:run:{run_id}:events"


def progress_key(run_id: int, prefix: str = "tickrun") -> str:
    return f"{prefix}:run:{run_id}:progress"


def _fields(type: EventType, data: dict[str, Any]) -> dict[str, str]:
    return {"type": type.value, "time": dt.datetime.now(dt.UTC).isoformat(),
            "data": json.dumps(data, separators=(",", ":"), default=str)}


class RedisEventLog(EventLog):
    def __init__(self, url: str, *, maxlen: int = 100_000, ttl_seconds: int = 7 * 24 * 3600,
                 timeout_seconds: float = 0.5, read_timeout_seconds: float = 2.0,
                 prefix: str = "tickrun") -> None:
        self._prefix = prefix
        self._url = url
        self._read_timeout = read_timeout_seconds
        self._maxlen = maxlen
        self._ttl = ttl_seconds
        # Writes get a short timeout so a sick Redis cannot stall a trading step; reads
        # (an API request's progress, a replay) a short one too, so a Redis that is down
        # without refusing connections (frozen, cut off) cannot hold request threads;
        # blocking reads get their own connections, sized for XREAD BLOCK.
        self._writer = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            decode_responses=True, retry=_retry_once_on_broken_connection(),
        )
        self._append_batch = self._writer.register_script(APPEND_BATCH)
        self._reader = redis.Redis.from_url(
            url, socket_timeout=read_timeout_seconds, socket_connect_timeout=read_timeout_seconds,
            decode_responses=True, max_connections=200, retry=_retry_once_on_broken_connection(),
        )
        self._read_progress = self._reader.register_script(READ_PROGRESS)
        self._blocking = redis.Redis.from_url(
            url, socket_timeout=BLOCKING_TIMEOUT_SECONDS,
            socket_connect_timeout=read_timeout_seconds, decode_responses=True,
            max_connections=200, retry=_retry_once_on_broken_connection(),
        )

    def append(self, run_id: int, type: EventType, data: dict[str, Any]) -> str:
        return cast(str, self._writer.xadd(stream_key(run_id, self._prefix),
                                           _fields(type, data), maxlen=self._maxlen,
                                           approximate=True))

    def append_each(self, events: Sequence[tuple[int, EventType, dict[str, Any]]]) -> None:
        # A pipeline, not a transaction: each XADD stands alone, as append's would.
        with self._writer.pipeline(transaction=False) as pipe:
            for run_id, type, data in events:
                pipe.xadd(stream_key(run_id, self._prefix), _fields(type, data),
                          maxlen=self._maxlen, approximate=True)
            pipe.execute()

    def read(self, run_id: int, after: str | None = None, *, count: int = 500,
             block_ms: int = 0) -> list[Event]:
        key = stream_key(run_id, self._prefix)
        if block_ms > 0:
            block_ms = min(block_ms, int((BLOCKING_TIMEOUT_SECONDS - 2) * 1000))
            reply = self._blocking.xread({key: after or "0-0"}, count=count, block=block_ms)
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

    def append_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                     progress: dict[str, Any] | None = None) -> None:
        # One script, one round trip: the batch is applied whole or not at all, as the
        # MULTI/EXEC before it was, and a Redis restart's NOSCRIPT loads it again.
        keys, args = self._batch(run_id, events, progress)
        self._append_batch(keys=keys, args=args)

    def send_batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
                   progress: dict[str, Any] | None = None) -> Callable[[], None]:
        """The batch's script sent on a connection of its own; the call returned reads
        its reply. A connection closed under it (Redis restarted) or a script Redis
        lost sends the batch again at once, as append_batch's retry and NOSCRIPT do."""
        keys, args = self._batch(run_id, events, progress)
        pool = self._writer.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", APPEND_BATCH_SHA, len(keys), *keys, *args)
        except redis.ConnectionError:
            pool.release(conn)
            self._append_batch(keys=keys, args=args)
            return already_answered
        except BaseException:
            pool.release(conn)
            raise

        def answer() -> None:
            try:
                conn.read_response()
                return
            except (NoScriptError, redis.ConnectionError):
                pass  # sent again below, once the connection is back in the pool
            finally:
                pool.release(conn)
            self._append_batch(keys=keys, args=args)

        return answer

    def _batch(self, run_id: int, events: Sequence[tuple[EventType, dict[str, Any]]],
               progress: dict[str, Any] | None) -> tuple[list[str], list[Any]]:
        """APPEND_BATCH's keys and arguments."""
        args: list[Any] = [self._maxlen, dt.datetime.now(dt.UTC).isoformat(), len(events)]
        for type, data in events:
            args += (type.value, json.dumps(data, separators=(",", ":"), default=str))
        for field, value in (progress or {}).items():
            args += (field, json.dumps(value, default=str))
        return [stream_key(run_id, self._prefix), progress_key(run_id, self._prefix)], args

    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None:
        mapping = {k: json.dumps(v, default=str) for k, v in progress.items()}
        self._writer.hset(progress_key(run_id, self._prefix), mapping=mapping)  # type: ignore[arg-type]

    def get_progress(self, run_id: int) -> dict[str, Any]:
        raw: dict[str, str] = self._reader.hgetall(progress_key(run_id, self._prefix))
        return decode_progress(raw)

    def get_progress_many(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        if not run_ids:
            return {}
        reply = self._read_progress(keys=[progress_key(r, self._prefix) for r in run_ids])
        return decode_progress_page(run_ids, reply)

    def async_progress(self) -> ProgressReads:
        return RedisProgressReads(self._url, lambda run_id: progress_key(run_id, self._prefix),
                                  timeout_seconds=self._read_timeout)

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
        self._blocking.close()

    def resume_point(self, event_id: str) -> str:
        """A stream id; a bare `ms` is `ms-0`, as Redis itself reads an incomplete id."""
        ms, _, seq = event_id.partition("-")
        return f"{int(ms)}-{int(seq or 0)}"
