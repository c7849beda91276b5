"""Resume while many runs are live, from outside over HTTP, on both event logs.

Six intraday runs play at once; each has a follower that reads 40 events, drops the
connection, resumes with Last-Event-ID to the `result`, and the two parts together must
be the run's whole history after the first event: nothing missed, nothing twice.
"""

from __future__ import annotations

import threading

import pytest

from tests.apiserver import Backend, running_api, wait_status
from tests.integration.test_api_runs import SLOW, create, create_model, intraday, sse_events

pytestmark = pytest.mark.timeout(300)
RUNS = 6


def test_every_resumed_follower_gets_the_whole_history(backend: Backend) -> None:
    with running_api(backend, per_user=RUNS, runner_env=SLOW) as api, api.client() as c:
        model = create_model(c)
        runs = [create(c, intraday(model))["id"] for _ in range(RUNS)]
        seen: dict[int, list[str]] = {}
        errors: list[BaseException] = []

        def follow(run_id: int) -> None:
            try:
                with api.client() as own:
                    head = sse_events(own, run_id, limit=40)
                    tail = sse_events(own, run_id, last_id=head[-1][0])
                    assert tail[-1][1] == "result"
                    seen[run_id] = [e[0] for e in head + tail]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=follow, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        assert errors == []
        for run_id in runs:
            wait_status(c, run_id, {"completed"})
            history = [e[0] for e in sse_events(c, run_id)]
            assert seen[run_id] == history, f"run {run_id}: the resumed stream differs"
            assert len(history) > 390
