"""Every status change of a run is a `status` event its followers see, in order, once:
queued, admitted, running, stopping, then the final one, for several runs at once,
some waiting for admission, some stopped, on both event logs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.integration.test_api_runs import SLOW, create, create_model, intraday, sse_events

pytestmark = pytest.mark.timeout(300)


def statuses(events: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [e[2]["data"]["status"] for e in events if e[1] == "status"]


def test_each_change_is_announced_once_in_order(backend: Backend) -> None:
    # Two admitted at a time: the other two wait `queued` until a place frees.
    with running_api(backend, per_user=2, global_=2, runner_env=SLOW) as api, \
            api.client() as c:
        model = create_model(c)
        runs = [create(c, intraday(model))["id"] for _ in range(4)]
        first, second = runs[:2]
        wait_for(lambda: all(c.get(f"/v1/runs/{r}").json()["progress"]["step"] > 0
                             for r in (first, second)), timeout=60)
        for run_id in (first, second):  # stopped mid-run; their places go to the others
            assert c.post(f"/v1/runs/{run_id}/stop").status_code == 202
            assert c.post(f"/v1/runs/{run_id}/stop").status_code == 202  # twice: once
        for run_id in runs[2:]:
            wait_status(c, run_id, {"completed"}, timeout=120)
        for run_id in runs:
            events = sse_events(c, run_id)
            expected = (["queued", "admitted", "running", "stopping", "stopped"]
                        if run_id in (first, second)
                        else ["queued", "admitted", "running", "completed"])
            assert statuses(events) == expected, f"run {run_id}"
            assert events[0][1] == "status" and events[-1][1] == "result"
        stopping = [e for e in sse_events(c, first) if e[1] == "status"][3][2]["data"]
        assert stopping["reason"] == "stop requested"
