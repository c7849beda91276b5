"""The Store interface every layer programs against: one interface per aggregate.

The runner, the reconciler and the API see only these; PostgreSQL (the system of
record) and SQLite (the embedded default) implement them with the same semantics, and
every store test runs on both. `Store` is all of them together. A run's status is not
written through it: core.store.run_status does that, for core.lifecycle alone.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

from core.store.async_reads import RunReads, ThreadedRunReads
from core.store.batches import BatchRun, BatchStore
from core.store.ledger import LedgerStore
from core.store.ledger_tx import LedgerTx
from core.store.models import ModelStore
from core.store.orders import OrderStore
from core.store.prices import CachedSeries, PriceBar, PriceStore
from core.store.research import ResearchKind, ResearchSeries, ResearchStore
from core.store.retention import RetentionStore
from core.store.runs import RunFilter, RunStore
from core.store.schedules import ScheduleStore
from core.store.spend import SpendStore

__all__ = ["BatchRun", "CachedSeries", "Database", "LedgerTx", "PriceBar", "ResearchKind",
           "ResearchSeries", "RunFilter", "Store"]


class Database(ABC):
    """The database itself: its schema, its health, and the controller's wake-up."""

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the database cannot answer."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def tell_controller(self, run_ids: Sequence[int]) -> None:
        """Tell the controllers at once that these runs need them (their workloads could
        not be made)."""

    @abstractmethod
    def listen_for_controller(self, stop: threading.Event, wake: Callable[[], None]) -> None:
        """Call `wake` for every message `tell_controller` sends, until `stop` (blocks)."""

    def commit_together(self) -> AbstractContextManager[None]:
        """A hint: the write transactions made inside, on this thread, may commit as
        one where that is cheaper (SQLite: one lock and one commit for a step's
        decision and the events its event log writes in the same file); elsewhere each
        commits on its own, as PostgreSQL's do. Callers rely on neither."""
        return nullcontext()


class Store(Database, ModelStore, RunStore, BatchStore, ScheduleStore, LedgerStore,
            OrderStore, RetentionStore, SpendStore, PriceStore, ResearchStore):
    """Every aggregate's interface: what `store.get_run(...)` and its kin reach."""

    def async_reads(self) -> RunReads:
        """The hot run reads for an event loop (the API's); open them in that loop."""
        return ThreadedRunReads(self)
