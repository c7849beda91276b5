"""What an executor says about one run's workload, whatever runs it.

The reconciler reads only these states, so the same admission and status logic drives
the Kubernetes executor (a Job and its pods) and the local one (a subprocess).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# suspended: created, waiting for admission; pending: admitted, not yet running;
# gone: there is no workload (deleted, never created, or lost with its process).
Phase = Literal["suspended", "pending", "running", "succeeded", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class WorkloadState:
    phase: Phase
    reason: str | None = None
    exit_code: int | None = None
    # A pod or process still holds the run (running or terminating): do not finalize yet.
    pod_alive: bool = False
    # The workload is being deleted (a Job with a deletionTimestamp): someone stops it.
    deleting: bool = False


GONE = WorkloadState("gone")
