"""The API's hot reads without blocking its event loop: one run, a page of runs.

The same SQL and row codec as the store (core.store.runs, core.store.sqlbase.owned);
only the transport differs. PostgreSQL reads on psycopg's async pool, so a request
never hops to a thread; SQLite (a file in this process) reads on a worker thread through
the store itself. Every write still goes through the store (core.lifecycle).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.errors import StoreUnavailable
from core.records import Run
from core.store import codec
from core.store.pg_health import checked_if_idle_async, pooled_async
from core.store.runs import RunFilter, RunStore, run_list_query
from core.store.sqlbase import Dialect, owned

RUN_BY_ID = "SELECT * FROM runs WHERE id = %s"


class RunReads(ABC):
    @abstractmethod
    async def get_run(self, run_id: int, user_id: str | None = None) -> Run:
        """The run; NotFound when missing or another user's."""

    @abstractmethod
    async def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]:
        ...

    @abstractmethod
    async def open(self) -> None:
        """Connect (inside the event loop that will use these reads)."""

    @abstractmethod
    async def close(self) -> None: ...


class ThreadedRunReads(RunReads):
    """The store's own reads on a worker thread: SQLite's, where a read is a local file
    access and the store's connection handling stays the one there is."""

    def __init__(self, store: RunStore) -> None:
        self._store = store

    async def open(self) -> None:
        pass  # the store's connection is the store's

    async def close(self) -> None:
        pass

    async def get_run(self, run_id: int, user_id: str | None = None) -> Run:
        return await asyncio.to_thread(self._store.get_run, run_id, user_id)

    async def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]:
        return await asyncio.to_thread(self._store.list_runs, user_id, flt)


class PostgresRunReads(RunReads):
    def __init__(self, conninfo: str, dialect: Dialect, *, max_size: int,
                 connect_kwargs: dict[str, Any], timeout: float = 10.0) -> None:
        self._dialect = dialect
        # Autocommit: each read is one statement, no transaction to open and close.
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=max_size, timeout=timeout, open=False,
            kwargs={**connect_kwargs, "row_factory": dict_row, "autocommit": True},
            configure=_json_as_text, check=checked_if_idle_async)

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def get_run(self, run_id: int, user_id: str | None = None) -> Run:
        rows = await self._rows(RUN_BY_ID, [run_id])
        return codec.record_from(Run, owned(rows[0] if rows else None, "run", run_id, user_id))

    async def list_runs(self, user_id: str | None, flt: RunFilter = RunFilter()) -> list[Run]:
        sql, params = run_list_query(self._dialect, user_id, flt)
        return [codec.record_from(Run, r) for r in await self._rows(sql, params)]

    async def _rows(self, sql: str, params: list[Any]) -> list[codec.Row]:
        try:
            async with pooled_async(self._pool) as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # As the store says it: the API answers 503 (core.store.postgres).
            raise StoreUnavailable(f"the database does not answer: {exc}".strip()[:300],
                                   delay=2.0) from exc


async def _json_as_text(conn: psycopg.AsyncConnection[Any]) -> None:
    """JSON columns as their text, which the codec parses: a run's spec is then read
    once per text (codec's frozen models), not validated again on every request."""
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
