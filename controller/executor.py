"""The Executor interface: where a run's session actually plays.

The API submits a workload for every new run, suspended; the reconciler admits it and
later reads what became of it. Every method is idempotent, because the API and the
reconciler may both act on one run, and a retry after a crash repeats calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from controller.workload import WorkloadState
from controller.workqueue import WorkQueue
from core.records import Run


class WorkloadRefused(Exception):
    """The platform refused to create or admit a workload, with its own words.

    `permanent`: the workload itself is invalid (HTTP 422) and the run fails with the
    message; otherwise (a quota, a policy) the run waits queued with the message as its
    reason and is tried again. Any other exception from an executor is temporary."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class WorkloadMissing(Exception):
    """admit() found no workload to start: its create never reached the platform (or
    it was deleted before admission). The caller makes it again, then admits."""


class Executor(ABC):
    name: str
    # What a workload that vanished means: True where deleting it is how a person stops
    # a run (kubectl delete job); False where it means the runner was lost.
    gone_means_stopped: bool = False
    # admit() may run on several threads at once (each an API call of its own).
    concurrent_admission: bool = False

    def __init__(self) -> None:
        # Run ids whose workloads changed: the reconciler's work queue.
        self.changes = WorkQueue()

    @abstractmethod
    def submit(self, run: Run) -> None:
        """Create the run's workload, suspended. A workload that exists is adopted.
        WorkloadRefused when the platform says no."""

    @abstractmethod
    def admit(self, run_id: int) -> None:
        """Let the suspended workload start."""

    @abstractmethod
    def stop(self, run_id: int) -> None:
        """Remove the workload: the runner gets SIGTERM, and a kill after the grace
        period. A workload that never started never starts."""

    @abstractmethod
    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        """The state of each run's workload (GONE where there is none)."""

    @abstractmethod
    def workload_run_ids(self) -> set[int]:
        """Run ids of every workload this executor holds, to find orphans."""

    def forget(self, run_id: int) -> None:
        """The run is final; drop what is kept about its workload."""
        return None

    def close(self) -> None:
        """Release connections and threads; running workloads are left as they are."""
        return None
