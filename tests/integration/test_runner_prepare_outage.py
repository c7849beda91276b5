"""A database that does not answer while a runner prepares its session is waited out in
the runner, as an outage at a step is: no failed pod, no Job backoff, no new attempt.

(`python -m bench cluster` found a new pod's first PostgreSQL connection stalling until
its 30 s TCP timeout; the runner exited 1 and the Job's next pod started the run 43 s
after its POST.)"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from core.errors import StoreUnavailable
from core.eventlog import EventLog
from core.exitcodes import EXIT_OK, EXIT_RETRY
from core.status import RunStatus
from core.store import Store
from runner.app import RunnerDeps, play_run
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import daily_spec, make_run


class StallingStore:
    """The store, whose first `failures` reads of the model find the database away."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store, self.failures, self.calls = store, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_model(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("the database does not answer: consuming input failed: "
                                   "could not receive data from server: Connection timed out")
        return self.store.get_model(*args, **kwargs)


def deps(store: Store, event_log: EventLog, *, failures: int,
         stop: StopSignal | None = None) -> RunnerDeps:
    return RunnerDeps(store=StallingStore(store, failures),  # type: ignore[arg-type]
                      event_log=event_log, settings=RunnerSettings(store_outage_seconds=30),
                      stop=stop or StopSignal())


def test_a_stalled_database_while_preparing_is_waited_out(store: Store,
                                                          event_log: EventLog) -> None:
    run = make_run(store, daily_spec(end=dt.date(2024, 1, 31)))
    assert play_run(run.id, deps(store, event_log, failures=2)) == EXIT_OK
    done = store.get_run(run.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 1
    assert done.steps_done == done.steps_total


def test_a_stop_while_waiting_for_the_database_leaves_the_run_to_the_next_attempt(
        store: Store, event_log: EventLog) -> None:
    run = make_run(store, daily_spec())
    stop = StopSignal()
    threading.Timer(0.3, stop.request).start()
    assert play_run(run.id, deps(store, event_log, failures=10**6, stop=stop)) == EXIT_RETRY
    assert store.get_run(run.id).status is RunStatus.ADMITTED
