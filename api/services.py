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
from core.lifecycle import Lifecycle
from core.marketdata.settings import MarketDataSettings
from core.spend import SpendSettings
from core.store import Store

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
