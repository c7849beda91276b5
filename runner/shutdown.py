"""SIGTERM/SIGINT: stop at the next step boundary, within a bounded budget.

The runner learns of a stop from one channel: a signal. Every stop is delivered as one:
`POST /v1/runs/{id}/stop` (core.lifecycle.request_stop) marks the run `stopping` and
deletes its workload, and so does the reconciler for a `stopping` run whose workload is
still alive; the kubelet then sends SIGTERM (Kubernetes), or the local executor does
(controller/local.py, adopted runners included). The loop never polls the database for
a stop. What each channel means:

- SIGTERM: stop at the step boundary. Whether it is a stop or a disruption (eviction,
  node drain, pod deleted) the run's status says, read once the loop has stopped
  (runner.app._stop_intended): `stopping` (or final) is a stop and the runner saves
  `stopped`; still `running` after `stop_intent_wait_seconds` is a disruption, and the
  runner exits 1 for the Job's next pod to resume.
- SIGINT: a person at a terminal: a stop.
- A run already `stopping` when the runner starts (read as it takes the run) stops
  before its first step.
- The LLM budget (runner.budget) ends a run at a step boundary by itself.

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

from core.signals import on_signals

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
    """SIGTERM and SIGINT request the stop, on core.signals' thread: never inside the
    interrupted code, which may hold the very lock the stop's event takes."""
    def handle(sig: signal.Signals) -> None:
        if stop.requested:
            return
        stop.request(sig.name)
        log.info("%s received: stopping at the step boundary (budget %.1fs)", sig.name,
                 budget_seconds)
        watchdog = threading.Thread(target=_expire, args=(budget_seconds,), daemon=True,
                                    name="stop-watchdog")
        watchdog.start()

    on_signals(handle)


def _expire(budget_seconds: float) -> None:
    time.sleep(budget_seconds)
    log.error("stop budget of %.1fs exceeded; exiting before the kill", budget_seconds)
    logging.shutdown()
    os._exit(EXIT_BUDGET_EXCEEDED)
