"""What the routes work with, built once per process from settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from api.auth import Authenticator
from api.settings import ApiSettings
from api.sse import EventHub
from controller.executor import Executor
from controller.reconciler import Reconciler
from core.errors import NotFound
from core.eventlog import EventLog
from core.eventlog.async_progress import ProgressReads
from core.lifecycle import Lifecycle
from core.marketdata.settings import MarketDataSettings
from core.spend import SpendSettings
from core.store import Store
from core.store.async_reads import RunReads

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: ApiSettings
    store: Store
    events: EventLog
    executor: Executor
    auth: Authenticator
    hub: EventHub
    reconciler: Reconciler | None = None  # in-process (embedded default)
    market_data: MarketDataSettings = field(default_factory=MarketDataSettings)
    spend: SpendSettings = field(default_factory=SpendSettings)
    resync_seconds: float = 300.0  # TICKRUN_RESYNC_SECONDS
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _run_reads: RunReads | None = None
    _progress_reads: ProgressReads | None = None

    async def open_reads(self) -> None:
        """The hot reads (a run, a page of runs, their progress) on this process's event
        loop, for the `async def` routes: called in the app's lifespan."""
        self._run_reads = self.store.async_reads()
        await self._run_reads.open()
        self._progress_reads = self.events.async_progress()

    async def close_reads(self) -> None:
        for reads in (self._run_reads, self._progress_reads):
            if reads is not None:
                await reads.close()
        self._run_reads = self._progress_reads = None

    @property
    def run_reads(self) -> RunReads:
        if self._run_reads is None:
            raise RuntimeError("the reads open with the app (Services.open_reads)")
        return self._run_reads

    @property
    def progress_reads(self) -> ProgressReads:
        if self._progress_reads is None:
            raise RuntimeError("the reads open with the app (Services.open_reads)")
        return self._progress_reads

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle(self.store, self.events, self.executor)

    def wake_controller(self) -> None:
        """Wake the embedded controller at once (a run to admit, a stop). A cluster's
        controller hears of changes from its watches, and of a Job the API could not
        make from the store's channel (Lifecycle.enqueued)."""
        if self.reconciler is not None:
            self.reconciler.wake.set()

    def start_controller(self, interval: float) -> None:
        if self.reconciler is None:
            return
        self._thread = threading.Thread(
            target=self.reconciler.run_forever, args=(self._stop,),
            kwargs={"interval": interval}, name="reconciler", daemon=True)
        self._thread.start()
        log.info("embedded reconciler started (executor %s)", self.executor.name)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.hub.close()
        self.executor.close()
        self.events.close()
        self.store.close()


def run_ended(store: Store) -> Callable[[int], bool]:
    def ended(run_id: int) -> bool:
        try:
            return store.get_run(run_id).status.is_terminal
        except NotFound:
            return True
    return ended
