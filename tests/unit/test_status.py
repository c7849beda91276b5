"""The run status machine: forward only, terminal is final."""

from __future__ import annotations

import pytest

from core.status import TERMINAL, RunStatus, can_transition


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("target", list(RunStatus))
def test_terminal_statuses_never_change(terminal: RunStatus, target: RunStatus) -> None:
    assert not can_transition(terminal, target)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (RunStatus.QUEUED, RunStatus.ADMITTED, True),
        (RunStatus.QUEUED, RunStatus.RUNNING, False),  # admission first
        (RunStatus.QUEUED, RunStatus.STOPPED, True),  # stopping a queued run never starts it
        (RunStatus.ADMITTED, RunStatus.QUEUED, False),
        (RunStatus.RUNNING, RunStatus.RUNNING, True),  # a replacement pod takes over
        (RunStatus.RUNNING, RunStatus.ADMITTED, False),
        (RunStatus.STOPPING, RunStatus.COMPLETED, True),  # finished as the stop arrived
        (RunStatus.STOPPING, RunStatus.RUNNING, False),
    ],
)
def test_transitions(current: RunStatus, target: RunStatus, allowed: bool) -> None:
    assert can_transition(current, target) is allowed
