"""Runs' live progress for an event loop (the API's), without a thread per read.

Redis reads on redis.asyncio with the same keys and decoding as RedisEventLog; the
SQLite log (a file in this process) reads through the log itself on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from core.eventlog.base import EventLog

Progress = dict[str, Any]


# Several runs' progress hashes in one reply, one JSON text: an array with one object per
# key whose values are the fields' own JSON texts (as the writers store them), {} for a
# run with none. A pipeline of HGETALLs cost a reply per run and a json.loads per field:
# a page of 50 playing runs spent a tenth of its time there.
READ_PROGRESS = """
local out = {}
for i, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for j = 1, #flat, 2 do
    fields[#fields + 1] = cjson.encode(flat[j]) .. ':' .. flat[j + 1]
  end
  out[i] = '{' .. table.concat(fields, ',') .. '}'
end
return '[' .. table.concat(out, ',') .. ']'
"""


def decode_progress(raw: dict[str, str]) -> Progress:
    """A run's progress hash as Redis holds it (each field JSON), for either client."""
    return {k: json.loads(v) for k, v in raw.items()}


def decode_progress_page(run_ids: Sequence[int], reply: str) -> dict[int, Progress]:
    """READ_PROGRESS's reply for `run_ids`, in their order."""
    found: list[Progress] = json.loads(reply)
    return dict(zip(run_ids, found, strict=True))


class ProgressReads(ABC):
    @abstractmethod
    async def get_progress_many(self, run_ids: Sequence[int]) -> dict[int, Progress]:
        """Each run's progress (empty when it has none), in one round trip."""

    @abstractmethod
    async def close(self) -> None: ...


class ThreadedProgressReads(ProgressReads):
    def __init__(self, log: EventLog) -> None:
        self._log = log

    async def get_progress_many(self, run_ids: Sequence[int]) -> dict[int, Progress]:
        return await asyncio.to_thread(self._log.get_progress_many, run_ids)

    async def close(self) -> None:
        pass  # the log's connections are the log's


class RedisProgressReads(ProgressReads):
    def __init__(self, url: str, keys: Any, *, timeout_seconds: float) -> None:
        """`keys`: run id -> its progress key (RedisEventLog's)."""
        self._keys = keys
        # As short a timeout as the log's reads: a frozen Redis must not hold requests.
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            decode_responses=True, max_connections=200)
        self._read_progress = self._redis.register_script(READ_PROGRESS)

    async def get_progress_many(self, run_ids: Sequence[int]) -> dict[int, Progress]:
        if not run_ids:
            return {}
        reply = await self._read_progress(keys=[self._keys(r) for r in run_ids])
        return decode_progress_page(run_ids, reply)

    async def close(self) -> None:
        await self._redis.aclose()  # type: ignore[attr-defined]  # types-redis predates it
