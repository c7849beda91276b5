"""Run status state machine.

Statuses move forward only; terminal statuses never change again. Keeping the legal
transitions in one table lets the store refuse an illegal change inside the same
transaction that would make it, so two actors (runner, reconciler, API) racing on one
run cannot produce a status history that makes no sense.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        """Holds a slot against the per-user and global limits."""
        return self in ACTIVE


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED})
ACTIVE = frozenset({RunStatus.ADMITTED, RunStatus.RUNNING, RunStatus.STOPPING})

_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.ADMITTED, RunStatus.STOPPING, RunStatus.STOPPED, RunStatus.FAILED}
    ),
    RunStatus.ADMITTED: frozenset(
        {RunStatus.RUNNING, RunStatus.STOPPING, RunStatus.STOPPED, RunStatus.FAILED,
         RunStatus.COMPLETED}
    ),
    # running -> running: a replacement pod (or a restarted runner) takes the run over.
    RunStatus.RUNNING: frozenset(
        {RunStatus.RUNNING, RunStatus.STOPPING, RunStatus.COMPLETED, RunStatus.FAILED,
         RunStatus.STOPPED}
    ),
    # A run may complete on its own while a stop is on its way.
    RunStatus.STOPPING: frozenset(
        {RunStatus.STOPPING, RunStatus.STOPPED, RunStatus.COMPLETED, RunStatus.FAILED}
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.STOPPED: frozenset(),
}


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in _ALLOWED[current]
