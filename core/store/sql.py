"""The SQL store: every aggregate's SQL mixin over one `_tx` and one Dialect.

PostgreSQL and SQLite subclass it and supply `_tx`, the dialect and the database's own
parts (migrations, the controller's channel). See core.store.sqlbase for the shared
ground and each aggregate's module for its queries.
"""

from __future__ import annotations

from core.store.base import Store
from core.store.batches import BatchesSql
from core.store.ledger import LedgerSql
from core.store.models import ModelsSql
from core.store.orders import OrdersSql
from core.store.prices import PricesSql
from core.store.research import ResearchSql
from core.store.retention import RetentionSql
from core.store.runs import RunsSql
from core.store.schedules import SchedulesSql
from core.store.spend import SpendSql
from core.store.sqlbase import Cursor, Dialect, SqlAccess, utcnow

__all__ = ["Cursor", "Dialect", "SqlStore", "utcnow"]


class SqlStore(ModelsSql, RunsSql, BatchesSql, SchedulesSql, LedgerSql, OrdersSql,
               RetentionSql, SpendSql, PricesSql, ResearchSql, SqlAccess, Store):
    """Store semantics on top of `_tx`, which subclasses supply per database."""
