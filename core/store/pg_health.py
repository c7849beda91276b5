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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

IDLE_CHECK_SECONDS = 2.0

_idle_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _idle_long(conn: Any) -> bool:
    return time.monotonic() - _idle_since.get(conn, 0.0) > IDLE_CHECK_SECONDS


@contextmanager
def pooled(pool: ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """`pool.connection()`, noting when the connection goes back. Not the pool's `reset`
    hook: with one set, psycopg_pool returns every connection through its worker thread,
    a thread hand-off per statement that the next statement may wait for."""
    with pool.connection() as conn:
        try:
            yield conn
        finally:
            _idle_since[conn] = time.monotonic()


def checked_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's `check`: raises (the pool replaces it) for a dead idle connection."""
    if _idle_long(conn):
        ConnectionPool.check_connection(conn)


@asynccontextmanager
async def pooled_async(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """As `pooled`: the async pool's `reset` would return each connection through a
    task of its own."""
    async with pool.connection() as conn:
        try:
            yield conn
        finally:
            _idle_since[conn] = time.monotonic()


async def checked_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _idle_long(conn):
        await AsyncConnectionPool.check_connection(conn)
