"""A schedule on the real test cluster: the leading controller fires it; SIGKILLed between
two fires, its successor fires the due time it missed once (within the make-up window)
and the next on time. The runs are Jobs like any other, labelled with their schedule,
with a ScheduleFired Event each.

The controllers run on a clock shifted to 09:59:50 New York on the next XNYS session
(libfaketime), so a fire is due on a trading day whatever day the suite runs. The test
waits on the due times themselves (a minute apart), so every second before them counts.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from typing import Any

import httpx
import pytest
from kubernetes import client

from core import calendar
from core.schedule import NEW_YORK
from tests.apiserver import ApiServer, wait_status
from tests.cluster.helpers import wait_until
from tests.cluster.stack import Stack
from tests.cluster.test_faults import lease_holder
from tests.integration.test_api_runs import create_model

pytestmark = [pytest.mark.cluster]


def shifted_start() -> tuple[dt.datetime, float]:
    """09:59:50 New York on the first session after today, and how far ahead of now."""
    today = dt.datetime.now(NEW_YORK).date()
    day = today + dt.timedelta(days=1)
    while not calendar.is_session(day):
        day += dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(9, 59, 50), NEW_YORK)
    return start, (start - dt.datetime.now(dt.UTC)).total_seconds()


def fires_at_ten(c: httpx.Client, schedule_id: int, day: dt.date) -> dict[int, dict[str, Any]]:
    """The schedule's recorded due times on `day` at 10:MM New York, by minute."""
    fires = c.get(f"/v1/schedules/{schedule_id}/fires", params={"limit": 1000}).json()
    out = {}
    for fire in fires:
        due = dt.datetime.fromisoformat(fire["due_at"]).astimezone(NEW_YORK)
        if due.date() == day:
            out[due.minute] = fire
    return out


def wait_shifted(offset: float, until: dt.datetime) -> None:
    """Sleep until the controllers' shifted clock reads `until`."""
    left = (until - dt.datetime.now(dt.UTC)).total_seconds() - offset
    if left > 0:
        time.sleep(left)


@pytest.mark.timeout(420)
def test_a_killed_leaders_successor_fires_the_missed_due_time_once(
        stack: Stack, api: ApiServer) -> None:
    stack.stop_controllers()
    start, offset = shifted_start()
    day = start.date()
    first = stack.start_controller("sched-1", clock_offset=offset)
    wait_until(lambda: lease_holder(stack) == "sched-1", 30, "sched-1 to lead")
    with api.client("sched-user") as c:
        body = {"name": "every minute at ten", "model_id": create_model(c, "k8s-sched"),
                "cron": "* 10 * * *", "mode": "daily", "symbols": ["MSFT"], "sessions": 2,
                "decider": "sma_crossover", "decider_params": {"fast": 1, "slow": 2},
                "data": "synthetic", "make_up_seconds": 120}
        made = c.post("/v1/schedules", json=body)
        assert made.status_code == 201, made.text
        schedule = made.json()

        def diagnose() -> str:
            fires = c.get(f"/v1/schedules/{schedule['id']}/fires").text
            logs = [stack.controller_log(n)[-4000:] for n in ("sched-1", "sched-2")
                    if (stack.log_dir / f"controller-{n}.log").exists()]
            return f"fires: {fires}\n" + "\n".join(logs)

        # 10:00 fires under the first leader (made up, should it lead a little after
        # 10:00), which is then killed before 10:01.
        wait_until(lambda: 0 in fires_at_ten(c, schedule["id"], day), 60, "the 10:00 fire",
                   diagnose=diagnose)
        # The fire is committed before its Job and its Event are made: a kill in between
        # would lose the Event (best effort), so the kill waits for it.
        run_at_ten = fires_at_ten(c, schedule["id"], day)[0]["run_id"]
        wait_until(lambda: fired_event(stack, run_at_ten) is not None, 20,
                   "the 10:00 fire's ScheduleFired Event", diagnose=diagnose)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # Nobody leads at 10:01; the successor starts 5 s later and must make it up.
        wait_shifted(offset, dt.datetime.combine(day, dt.time(10, 1, 5), NEW_YORK))
        assert 1 not in fires_at_ten(c, schedule["id"], day)
        stack.start_controller("sched-2", clock_offset=offset)
        wait_until(lambda: {0, 1, 2} <= set(fires_at_ten(c, schedule["id"], day)), 150,
                   "the 10:01 fire made up and the 10:02 fire on time", diagnose=diagnose)

        fires = fires_at_ten(c, schedule["id"], day)
        assert [fires[m]["outcome"] for m in (0, 1, 2)] == ["fired"] * 3, fires
        run_ids = [fires[m]["run_id"] for m in (0, 1, 2)]
        assert len(set(run_ids)) == 3 and all(run_ids)
        listed = c.get("/v1/runs", params={"schedule_id": schedule["id"]}).json()["items"]
        # Each due time once: no other run at 10:00-10:02 of that day.
        assert sorted(r["id"] for r in listed if r["id"] in run_ids) == sorted(run_ids)
        assert len(listed) == len({f["run_id"] for f in fires.values() if f["run_id"]})
        for run_id in run_ids:
            done = wait_status(c, run_id, {"completed", "failed", "stopped"}, timeout=120)
            assert done["status"] == "completed", done
            assert done["schedule_id"] == schedule["id"]
            job = stack.cluster.batch.read_namespaced_job(f"tickrun-run-{run_id}",
                                                          stack.namespace)
            assert job.metadata.labels["tickrun.io/schedule-id"] == str(schedule["id"])
            assert fired_event(stack, run_id), f"no ScheduleFired Event on run {run_id}'s Job"


def fired_event(stack: Stack, run_id: int) -> str | None:
    events: list[client.CoreV1Event] = stack.cluster.core.list_namespaced_event(
        stack.namespace, field_selector=f"involvedObject.name=tickrun-run-{run_id}").items
    return next((e.message for e in events if e.reason == "ScheduleFired"), None)
