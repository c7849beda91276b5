"""Which runs' live progress a run document reads: a hash only a started runner writes."""

from __future__ import annotations

import dataclasses
import datetime as dt

from api.routes.runs import _active
from core.records import Run
from core.status import RunStatus
from tests.factories import intraday_spec

NOW = dt.datetime(2026, 12, 7, 15, tzinfo=dt.UTC)


def _run(run_id: int, status: RunStatus, attempts: int) -> Run:
    return Run(id=run_id, user_id="u", model_id=1, spec=intraday_spec(), status=status,
               status_reason=None, steps_total=390, steps_done=0, created_at=NOW,
               admitted_at=None, started_at=None, finished_at=None, stop_requested_at=None,
               result=None, attempts=attempts)


def test_only_runs_a_runner_started_and_that_have_not_ended_have_a_live_view() -> None:
    runs = [
        _run(1, RunStatus.QUEUED, 0),     # never started: no runner wrote progress
        _run(2, RunStatus.ADMITTED, 0),   # its Job not yet running
        _run(3, RunStatus.RUNNING, 1),
        _run(4, RunStatus.QUEUED, 1),     # a retry waiting: its last attempt's progress
        _run(5, RunStatus.STOPPING, 2),
        _run(6, RunStatus.COMPLETED, 1),  # ended: the store's result is the record
        _run(7, RunStatus.FAILED, 3),
    ]
    assert _active(runs) == [3, 4, 5]
    assert _active([dataclasses.replace(runs[0], attempts=1)]) == [1]
