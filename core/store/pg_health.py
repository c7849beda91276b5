"""Pooled PostgreSQL connections that survive a database restart unnoticed by callers.

A restart (or a failover) leaves every connection idle in a pool broken, and psycopg's
pools hand them out as they are: the next request on each would fail once (a 503, a
runner's step retried). A connection that sat idle for a while is asked whether it
still works when taken (one round trip, discarded and replaced if not); one in steady
use is not, so a busy runner or API worker pays nothing.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

IDLE_CHECK_SECONDS = 2.0

_idle_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _idle_long(conn: Any) -> bool:
    return time.monotonic() - _idle_since.get(conn, 0.0) > IDLE_CHECK_SECONDS


def returned(conn: psycopg.Connection[Any]) -> None:
    """The pool's `reset`: the connection went back to the pool now."""
    _idle_since[conn] = time.monotonic()


def checked_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's `check`: raises (the pool replaces it) for a dead idle connection."""
    if _idle_long(conn):
        ConnectionPool.check_connection(conn)


async def returned_async(conn: psycopg.AsyncConnection[Any]) -> None:
    _idle_since[conn] = time.monotonic()


async def checked_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _idle_long(conn):
        await AsyncConnectionPool.check_connection(conn)
