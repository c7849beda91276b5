"""SIGTERM/SIGINT: stop at the next step boundary, within a bounded budget.

The handler only records the request; the session loop sees it between steps (and an
in-flight decision is abandoned after a short bound). A watchdog ends the process if
saving the partial result overruns the budget, so the kubelet's SIGKILL never comes
first; the controller then finalizes the run from the ledger.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

EXIT_BUDGET_EXCEEDED = 70


class StopSignal:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.received_at: float | None = None
        self.signal_name: str | None = None

    def request(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.received_at = time.monotonic()
            self.signal_name = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def install_handlers(stop: StopSignal, *, budget_seconds: float) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            return
        stop.request(name)
        log.info("%s received: stopping at the step boundary (budget %.1fs)", name,
                 budget_seconds)
        watchdog = threading.Thread(target=_expire, args=(budget_seconds,), daemon=True,
                                    name="stop-watchdog")
        watchdog.start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _expire(budget_seconds: float) -> None:
    time.sleep(budget_seconds)
    log.error("stop budget of %.1fs exceeded; exiting before the kill", budget_seconds)
    logging.shutdown()
    os._exit(EXIT_BUDGET_EXCEEDED)
