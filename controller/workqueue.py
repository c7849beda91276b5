"""A keyed work queue, as controller-runtime's: run ids waiting to be reconciled.

A run id is added when something about it changes (a watch event, a runner's exit, a
stop) and waits once however many changes arrive meanwhile. `add_after` brings it back
after a delay (a backoff, a stop's retry, a lost runner's grace). The reconciler takes
every id that is due in one batch, so one pass costs what changed, not what is held.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: set[int] = set()
        self._later: list[tuple[float, int]] = []  # (due, run id), a heap
        self._due: dict[int, float] = {}  # run id -> its earliest due time in the heap
        self._cond = threading.Condition()

    def add(self, run_id: int) -> None:
        with self._cond:
            if run_id not in self._ready:
                self._ready.add(run_id)
                self._cond.notify_all()

    def add_after(self, run_id: int, seconds: float) -> None:
        """Due in `seconds`; an earlier due time of the same id wins."""
        if seconds <= 0:
            self.add(run_id)
            return
        due = self._clock() + seconds
        with self._cond:
            if self._due.get(run_id, float("inf")) <= due:
                return
            self._due[run_id] = due
            heapq.heappush(self._later, (due, run_id))
            self._cond.notify_all()

    def scheduled(self, run_id: int) -> float | None:
        """Seconds until the id is due again (0 when it is waiting now); None: never."""
        with self._cond:
            if run_id in self._ready:
                return 0.0
            due = self._due.get(run_id)
        return None if due is None else max(0.0, due - self._clock())

    def take(self) -> list[int]:
        """Every id due now, each once, and forgets them."""
        with self._cond:
            self._promote()
            taken, self._ready = sorted(self._ready), set()
        return taken

    def wait(self, timeout: float, *, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Until an id is due, `interrupted()` holds, or `timeout` seconds pass.
        True when an id is due."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                self._promote()
                if self._ready:
                    return True
                now = self._clock()
                if now >= deadline or interrupted():
                    return False
                nxt = self._later[0][0] if self._later else deadline
                # Short waits: `interrupted` is an Event of another owner, polled.
                self._cond.wait(min(deadline, nxt, now + 0.05) - now)

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._due)

    def _promote(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            due, run_id = heapq.heappop(self._later)
            if self._due.get(run_id) == due:  # not superseded by an earlier due time
                del self._due[run_id]
                self._ready.add(run_id)
