"""Persistence: one Store interface, PostgreSQL and SQLite implementations."""

from core.store.base import BatchRun, LedgerTx, RunFilter, Store
from core.store.factory import open_store

__all__ = ["BatchRun", "LedgerTx", "RunFilter", "Store", "open_store"]
